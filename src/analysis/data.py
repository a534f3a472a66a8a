"""Open a database in the contract and validate it before anything is computed.

The tables are exposed as DuckDB views (``patients``, ``diagnoses``, ``pain_episodes``,
``prescriptions``) over the files, so that counting happens in the engine and only
aggregates reach pandas. Validation runs as one SQL pass per table and collects every
problem (file, column, row, expected value) into a single :class:`AnalysisError`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from analysis import paths
from analysis.contract import SCHEMA, TABLES, Column
from analysis.errors import AnalysisError

MAX_LISTED_PROBLEMS = 20
METADATA_FILE = "dataset.json"


def _sql_str(s: str) -> str:
    return "'" + str(s).replace("'", "''") + "'"


@dataclass
class Database:
    """A validated database: a DuckDB connection with one view per contract table."""

    location: Path
    con: object
    files: dict[str, Path] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @property
    def is_synthetic(self) -> bool:
        return bool(self.metadata.get("synthetic", False))

    @property
    def label(self) -> str:
        """'synthetic default' or 'user data', for titles and captions."""
        return "synthetic data" if self.is_synthetic else "user data"

    def fingerprint(self) -> dict[str, str]:
        """sha256 of every input file, by file name."""
        out = {}
        for p in sorted(set(self.files.values()) | self._metadata_files()):
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            out[p.name] = h.hexdigest()
        return out

    def _metadata_files(self) -> set[Path]:
        m = self.location / METADATA_FILE if self.location.is_dir() else None
        return {m} if m and m.exists() else set()

    def sql(self, query: str, params=None):
        """Run a query and return a pandas DataFrame (aggregates only, by convention)."""
        return self.con.execute(query, params or []).df()

    def close(self) -> None:
        self.con.close()


def open_database(location: str | Path | None = None, *, validate: bool = True,
                  threads: int | None = None) -> Database:
    """Open the database at ``location`` (a contract folder or a ``.duckdb`` file).

    Every table is checked against the contract (see :mod:`analysis.contract`); bad input
    raises one :class:`AnalysisError` listing each problem with file, column and row.
    """
    import duckdb

    location = Path(location or paths.SYNTHETIC)
    if not location.exists():
        hint = ""
        if location.resolve() == paths.SYNTHETIC.resolve():
            hint = " Build the synthetic default first: python -m analysis synth"
        raise AnalysisError(f"Data location {location} does not exist.{hint}")
    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads={int(threads)}")
    db = Database(location=location, con=con)
    try:
        if location.is_dir():
            _attach_folder(db)
        elif location.suffix in (".duckdb", ".db"):
            _attach_duckdb_file(db)
        else:
            raise AnalysisError(
                f"Data location {location} is neither a folder of contract files nor a "
                "DuckDB database file (.duckdb)."
            )
        if validate:
            validate_database(db)
        _create_typed_views(db)
    except Exception:
        con.close()
        raise
    return db


def _attach_folder(db: Database) -> None:
    folder = db.location
    meta = folder / METADATA_FILE
    if meta.exists():
        try:
            db.metadata = json.loads(meta.read_text())
        except json.JSONDecodeError as exc:
            raise AnalysisError(f"{meta} is not valid JSON: {exc}") from None
    missing = []
    for table in TABLES:
        candidates = [folder / f"{table}.parquet", folder / f"{table}.csv"]
        found = [p for p in candidates if p.exists()]
        if not found:
            missing.append(f"{table} (expected {candidates[0].name} or {candidates[1].name})")
            continue
        if len(found) > 1:
            raise AnalysisError(
                f"{folder}: both {found[0].name} and {found[1].name} exist; keep one file per table."
            )
        path = found[0]
        db.files[table] = path
        if path.stat().st_size == 0:
            raise AnalysisError(f"{path}: the file is empty; expected a header row with the "
                                f"columns {', '.join(c.name for c in SCHEMA[table])}.")
        if path.suffix == ".parquet":
            src = f"read_parquet({_sql_str(path)}, file_row_number=true)"
            row = "file_row_number + 1"
        else:
            src = (f"read_csv({_sql_str(path)}, header=true, all_varchar=true, "
                   "auto_detect=true, strict_mode=true)")
            row = "row_number() OVER ()"
        try:
            db.con.execute(f"CREATE VIEW raw_{table} AS SELECT *, {row} AS __row FROM {src}")
            cols = [r[0] for r in db.con.execute(f"DESCRIBE raw_{table}").fetchall()]
        except Exception as exc:  # duckdb raises its own error classes
            raise AnalysisError(f"{path}: could not be read ({_first_line(exc)}).") from None
        absent = [c.name for c in SCHEMA[table] if c.name not in cols]
        if absent:
            raise AnalysisError(
                f"{path}: missing column(s) {', '.join(absent)}; the {table} table needs "
                f"{', '.join(c.name for c in SCHEMA[table])}."
            )
    if missing:
        raise AnalysisError(f"{folder}: missing table file(s): " + "; ".join(missing))
    if not db.metadata:
        db.metadata = _parquet_metadata(db)


def _parquet_metadata(db: Database) -> dict:
    path = db.files.get("patients")
    if path is None or path.suffix != ".parquet":
        return {}
    import pyarrow.parquet as pq

    kv = pq.read_schema(path).metadata or {}
    if kv.get(b"synthetic") == b"true":
        return {"synthetic": True}
    return {}


def _attach_duckdb_file(db: Database) -> None:
    db.con.execute(f"ATTACH {_sql_str(db.location)} AS src (READ_ONLY)")
    tables = {r[0] for r in db.con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog='src'").fetchall()}
    missing = [t for t in TABLES if t not in tables]
    if missing:
        raise AnalysisError(f"{db.location}: missing table(s) {', '.join(missing)}.")
    db.files = {"database": db.location}
    if "dataset_metadata" in tables:
        rows = db.con.execute("SELECT key, value FROM src.dataset_metadata").fetchall()
        db.metadata = {k: json.loads(v) for k, v in rows}
    for table in TABLES:
        db.con.execute(f"CREATE VIEW raw_{table} AS SELECT *, row_number() OVER () AS __row "
                       f"FROM src.{table}")
        cols = [r[0] for r in db.con.execute(f"DESCRIBE raw_{table}").fetchall()]
        absent = [c.name for c in SCHEMA[table] if c.name not in cols]
        if absent:
            raise AnalysisError(f"{db.location}: table {table} misses column(s) {', '.join(absent)}.")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# --------------------------------------------------------------------------- validation
def _column_check(col: Column) -> tuple[str, str]:
    """(SQL predicate that is TRUE for a bad value, expected text)."""
    c = f'"{col.name}"'
    txt = f"CAST({c} AS VARCHAR)"
    empty = f"({c} IS NULL OR trim({txt}) = '')"
    if col.kind in ("id", "text"):
        return empty, col.expected
    if col.kind == "vocab":
        vocab = ", ".join(_sql_str(v) for v in col.vocabulary)
        return f"({empty} OR {txt} NOT IN ({vocab}))", col.expected
    if col.kind == "integer":
        num = f"TRY_CAST({txt} AS DOUBLE)"
        return (f"({empty} OR {num} IS NULL OR {num} <> floor({num}) "
                f"OR {num} < {col.low} OR {num} > {col.high})"), col.expected
    if col.kind == "date":
        return f"({empty} OR TRY_CAST({txt} AS DATE) IS NULL)", col.expected
    if col.kind == "optional_date":
        return f"(NOT {empty} AND TRY_CAST({txt} AS DATE) IS NULL)", col.expected
    raise ValueError(col.kind)


def validate_database(db: Database, *, today: dt.date | None = None) -> None:
    """Check every table against the contract; raise one error listing every problem.

    Refused: missing or unparseable values, values outside their vocabulary or range,
    duplicate ``patient_id``, events of unknown patients, events before the patient's
    birth, events or births after the extract date (``dataset.json``: ``extract_date``)
    or after today. Events after the analysis index date are *not* refused: the
    definitions ignore them.
    """
    today = today or dt.date.today()
    ceiling = today
    if db.metadata.get("extract_date"):
        ceiling = min(ceiling, dt.date.fromisoformat(str(db.metadata["extract_date"])))
    problems: list[str] = []
    counts = 0
    for table in TABLES:
        where = db.files.get(table, db.location)
        checks = []
        for col in SCHEMA[table]:
            pred, expected = _column_check(col)
            checks.append((col.name, pred, expected))
        # one pass: each bad (row, column) is a row of the result
        unions = " UNION ALL ".join(
            f"SELECT __row, {_sql_str(name)} AS col, CAST(\"{name}\" AS VARCHAR) AS val, "
            f"{_sql_str(exp)} AS expected FROM raw_{table} WHERE {pred}"
            for name, pred, exp in checks
        )
        n_bad = db.con.execute(f"SELECT count(*) FROM ({unions})").fetchone()[0]
        if n_bad:
            counts += n_bad
            for row, col, val, exp in db.con.execute(
                f"SELECT * FROM ({unions}) ORDER BY __row, col LIMIT {MAX_LISTED_PROBLEMS}"
            ).fetchall():
                problems.append(_problem(where, table, col, row, val, exp))
    if counts:  # relational checks need clean values
        _raise(problems, counts)

    # duplicate patient ids
    dup_q = ("SELECT __row, CAST(patient_id AS VARCHAR) FROM raw_patients WHERE patient_id IN "
             "(SELECT patient_id FROM raw_patients GROUP BY patient_id HAVING count(*) > 1)")
    n = db.con.execute(f"SELECT count(*) FROM ({dup_q})").fetchone()[0]
    if n:
        counts += n
        for row, val in db.con.execute(f"{dup_q} ORDER BY __row LIMIT {MAX_LISTED_PROBLEMS}").fetchall():
            problems.append(_problem(db.files.get("patients", db.location), "patients",
                                     "patient_id", row, val, "a unique patient_id (this one repeats)"))
    # dates in patients
    pq = (f"SELECT __row, 'birth_date', CAST(birth_date AS VARCHAR), 'a birth date not after "
          f"{ceiling} (extract date or today)' FROM raw_patients "
          f"WHERE CAST(birth_date AS DATE) > DATE '{ceiling}' "
          f"UNION ALL SELECT __row, 'registered_to', CAST(registered_to AS VARCHAR), "
          f"'a date on or after registered_from' FROM raw_patients WHERE "
          f"TRY_CAST(CAST(registered_to AS VARCHAR) AS DATE) < CAST(registered_from AS DATE)")
    n = db.con.execute(f"SELECT count(*) FROM ({pq})").fetchone()[0]
    if n:
        counts += n
        for row, col, val, exp in db.con.execute(f"SELECT * FROM ({pq}) ORDER BY 1 LIMIT {MAX_LISTED_PROBLEMS}").fetchall():
            problems.append(_problem(db.files.get("patients", db.location), "patients", col, row, val, exp))
    # events: known patient, not before birth, not after the ceiling
    for table in TABLES[1:]:
        q = (
            f"SELECT e.__row, CASE WHEN p.pid IS NULL THEN 'patient_id' ELSE 'date' END, "
            f"CASE WHEN p.pid IS NULL THEN CAST(e.patient_id AS VARCHAR) ELSE CAST(e.date AS VARCHAR) END, "
            f"CASE WHEN p.pid IS NULL THEN 'the patient_id of a patient in the patients table' "
            f"WHEN CAST(e.date AS DATE) < p.birth THEN 'a date on or after the patient''s birth date ' || CAST(p.birth AS VARCHAR) "
            f"ELSE 'a date not after {ceiling} (extract date or today)' END "
            f"FROM raw_{table} e LEFT JOIN (SELECT CAST(patient_id AS VARCHAR) AS pid, "
            f"CAST(birth_date AS DATE) AS birth FROM raw_patients) p "
            f"ON CAST(e.patient_id AS VARCHAR) = p.pid "
            f"WHERE p.pid IS NULL OR CAST(e.date AS DATE) < p.birth OR CAST(e.date AS DATE) > DATE '{ceiling}'"
        )
        n = db.con.execute(f"SELECT count(*) FROM ({q})").fetchone()[0]
        if n:
            counts += n
            for row, col, val, exp in db.con.execute(f"SELECT * FROM ({q}) ORDER BY 1 LIMIT {MAX_LISTED_PROBLEMS}").fetchall():
                problems.append(_problem(db.files.get(table, db.location), table, col, row, val, exp))
    if counts:
        _raise(problems, counts)


def _problem(where, table, column, row, value, expected) -> str:
    shown = "an empty value" if value is None or str(value).strip() == "" else repr(str(value)[:60])
    return f"{where}: table {table}, column {column}, row {row}: expected {expected}, found {shown}"


def _raise(problems: list[str], total: int) -> None:
    listed = problems[:MAX_LISTED_PROBLEMS]
    more = total - len(listed)
    msg = f"The data do not follow the contract ({total} problem(s)):\n  " + "\n  ".join(listed)
    if more > 0:
        msg += f"\n  ... and {more} more problem(s) not listed."
    msg += "\nSee data/README.md for the contract."
    raise AnalysisError(msg)


def _create_typed_views(db: Database) -> None:
    """Typed views with the contract's column names and types only."""
    con = db.con
    id_types = {r[0] for t in TABLES for r in con.execute(
        f"SELECT column_type FROM (DESCRIBE raw_{t}) WHERE column_name='patient_id'").fetchall()}
    integer_ids = id_types <= {"BIGINT", "INTEGER", "HUGEINT", "UBIGINT", "SMALLINT"}
    pid = "patient_id" if integer_ids else "CAST(patient_id AS VARCHAR) AS patient_id"
    con.execute(
        f"CREATE VIEW patients AS SELECT {pid}, CAST(practice_id AS VARCHAR) AS practice_id, "
        "CAST(sex AS VARCHAR) AS sex, CAST(birth_date AS DATE) AS birth_date, "
        "CAST(registered_from AS DATE) AS registered_from, "
        "TRY_CAST(CAST(registered_to AS VARCHAR) AS DATE) AS registered_to FROM raw_patients")
    con.execute(f"CREATE VIEW diagnoses AS SELECT {pid}, CAST(date AS DATE) AS date, "
                "CAST(code AS VARCHAR) AS code FROM raw_diagnoses")
    con.execute(f"CREATE VIEW pain_episodes AS SELECT {pid}, CAST(date AS DATE) AS date, "
                "CAST(site AS VARCHAR) AS site, CAST(CAST(severity AS DOUBLE) AS INTEGER) AS severity, "
                "CAST(cause AS VARCHAR) AS cause FROM raw_pain_episodes")
    con.execute(f"CREATE VIEW prescriptions AS SELECT {pid}, CAST(date AS DATE) AS date, "
                "CAST(atc_code AS VARCHAR) AS atc_code FROM raw_prescriptions")


def is_marked_synthetic(location: str | Path) -> bool:
    """Whether a data location says it is synthetic (``dataset.json`` or Parquet metadata),
    without opening or validating it."""
    location = Path(location)
    meta = location / METADATA_FILE
    if meta.exists():
        try:
            return bool(json.loads(meta.read_text()).get("synthetic", False))
        except json.JSONDecodeError:
            return False
    pq_file = location / "patients.parquet"
    if pq_file.exists():
        import pyarrow.parquet as pq

        return (pq.read_schema(pq_file).metadata or {}).get(b"synthetic") == b"true"
    return False
