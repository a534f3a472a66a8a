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

from analysis import paths, validate_fast
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
    column_types: dict = field(default_factory=dict)
    url: str | None = None
    pending: object = field(default=None, repr=False)  # a validation running alongside

    @property
    def is_synthetic(self) -> bool:
        return marked_synthetic(self.metadata)

    @property
    def diagnosis_vocabulary(self) -> str:
        """The vocabulary of ``diagnoses.code`` (``dataset.json``: diagnosis_vocabulary;
        ICD9CM, the paper's and the contract's default, when not said)."""
        from analysis.codelists import DEFAULT_DIAGNOSIS_VOCABULARY

        return str(
            self.metadata.get("diagnosis_vocabulary") or DEFAULT_DIAGNOSIS_VOCABULARY
        ).upper()

    @property
    def import_notes(self) -> list[str]:
        """What an import could not map (``dataset.json``: unmapped_diagnoses, records by
        vocabulary): the definitions see none of those diagnoses."""
        un = self.metadata.get("unmapped_diagnoses") or {}
        if not un:
            return []
        parts = ", ".join(f"{v:,} {k}" for k, v in sorted(un.items()))
        return [
            f"the import could not map {parts} diagnosis record(s) to ICD-9-CM: the risk "
            f"definitions "
            "see none of those diagnoses"
        ]

    @property
    def label(self) -> str:
        """'synthetic default' or 'user data', for titles and captions."""
        return "synthetic data" if self.is_synthetic else "user data"

    def fingerprint(self) -> dict[str, str]:
        """sha256 of every input file, by file name (a server database: its URL)."""
        if self.url:
            return {"database": self.url}
        files = sorted(set(self.files.values()) | self._side_files())
        return {p.name: digest for p, digest in remembered_digests(files).items()}

    def _side_files(self) -> set[Path]:
        """Files that change what the tables hold besides the table files: a folder's
        ``dataset.json``; a DuckDB file's write-ahead log (``.wal``: rows not yet
        checkpointed into the file, which DuckDB replays on opening)."""
        if self.location.is_dir():
            side = self.location / METADATA_FILE
        else:
            side = self.location.with_name(self.location.name + ".wal")
        return {side} if side.exists() else set()

    def sql(self, query: str, params=None):
        """Run a query and return a pandas DataFrame (aggregates only, by convention)."""
        return self.con.execute(query, params or []).df()

    def check_valid(self) -> None:
        """Wait for a validation started by ``open_database(validate="alongside")`` and
        raise its error, if any; nothing to do after a plain validation."""
        if self.pending is not None:
            future, self.pending = self.pending, None
            future.result()

    def close(self) -> None:
        if self.pending is not None:  # the validation uses the database: let it finish
            self.pending.exception()
            self.pending = None
        self.con.close()


def open_database(
    location: str | Path | None = None, *, validate: bool | str = True, threads: int | None = None
) -> Database:
    """Open the database at ``location`` (a contract folder or a ``.duckdb`` file).

    Every table is checked against the contract (see :mod:`analysis.contract`); bad input
    raises one :class:`AnalysisError` listing each problem with file, column and row.
    ``validate="alongside"`` (embedded DuckDB only) runs that check in a second thread
    while the caller computes: the caller must call :meth:`Database.check_valid` before
    it uses any result, and after any failure (the data's problems explain it better).
    """
    import duckdb

    from analysis.credentials import refuse_passwords
    from analysis.engines import is_url

    refuse_passwords({"--data": str(location) if location is not None else None}, "Data location")
    if is_url(location) and str(location).lower().startswith("spark://"):
        return _open_spark(str(location), validate=validate)
    if is_url(location):
        return _open_postgres(str(location), validate=validate)
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
        if validate == "alongside":
            _validate_alongside(db)
        elif validate:
            _validate_once(db)
        _create_typed_views(db)
    except Exception:
        con.close()
        raise
    return db


def _validate_once(db: Database) -> None:
    """Validate ``db`` unless these exact contents were validated before (see
    :func:`_validation_marker`). When a file's digest is not remembered, it is computed in
    a second thread while the validation runs, rather than before it: the validation
    cannot be skipped for files never seen, and the two need not wait for each other."""
    known = _validation_marker(db, memo_only=True)
    if known is not None and known.exists():
        return
    if known is not None or _cache_folder() is None:
        validate_database(db)
        if known is not None:
            _touch(known)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        marker = pool.submit(_validation_marker, db)
        validate_database(db)
        _touch(marker.result())


def _validate_alongside(db: Database) -> None:
    """Start :func:`_validate_once` in a second thread, on a cursor of its own (DuckDB
    connections are not shared between threads); ``db.pending`` holds its future."""
    import dataclasses
    from concurrent.futures import ThreadPoolExecutor

    own = dataclasses.replace(db, con=db.con.cursor(), pending=None)

    def run():
        try:
            _validate_once(own)
        finally:
            own.con.close()

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="validate")
    db.pending = pool.submit(run)
    pool.shutdown(wait=False)


def remembered_digests(files) -> dict[Path, str]:
    """sha256 of each file, through the digest memo of the cache folder (a file unchanged
    since it was last hashed is not read again; see :func:`sha256_files`)."""
    folder = _cache_folder()
    return sha256_files(files, memo=folder / "digests.json" if folder else None)


def _cache_folder() -> Path | None:
    """``ANALYSIS_CACHE`` (default ``~/.cache/analysis``); None when it is ``off``."""
    import os

    setting = os.environ.get("ANALYSIS_CACHE", "")
    if setting.lower() in ("off", "0", "no"):
        return None
    return Path(setting) if setting else Path.home() / ".cache" / "analysis"


def _validation_marker(db: Database, *, memo_only: bool = False) -> Path | None:
    """Where a successful validation of exactly these files is remembered (None: the
    cache is off; with ``memo_only``, also None when a file's digest is not remembered).

    The key is the sha256 of every input file's content (about 0.2 s for the 360 MB of
    10 million synthetic patients, two files at a time; nothing when a file's inode,
    size, modification and change times are those of its last hashing, see
    :func:`sha256_files`), the metadata and the validation code, so any change to the data
    or the rules validates again. ``ANALYSIS_CACHE`` sets the folder (default
    ``~/.cache/analysis``); ``ANALYSIS_CACHE=off`` validates every time. Today's date is
    not part of the key: data with no event after the day it was validated has none after
    any later day either.
    """
    folder = _cache_folder()
    if folder is None:
        return None
    h = hashlib.sha256()
    files = sorted({*db.files.values(), *db._side_files()})
    digests = sha256_files(files, memo=folder / "digests.json", memo_only=memo_only)
    if digests is None:
        return None
    for p, digest in digests.items():
        h.update(p.name.encode() + digest.encode())
    h.update(json.dumps(db.metadata, sort_keys=True, default=str).encode())
    h.update(repr(SCHEMA).encode())
    for code in (__file__, validate_fast.__file__):  # the validation code itself
        h.update(Path(code).read_bytes())
    return folder / "validated" / f"{h.hexdigest()}.ok"


def sha256_files(
    paths, threads: int = 2, memo: Path | None = None, memo_only: bool = False
) -> dict[Path, str] | None:
    """sha256 (hex) of each file's content, ``threads`` files at a time (hashlib releases
    the GIL while it hashes), by path, in the order given.

    ``memo``: a JSON file remembering each digest with the file's inode, size,
    modification and change times (nanoseconds). A file whose four are unchanged is not
    read again: the kernel sets the change time on every write and no tool can set it
    back (git trusts the same signature). As in git, an entry recorded less than a second
    after the file's last change is not trusted (file times are coarser than a write).
    The memo is replaced atomically. ``memo_only``: None unless every digest is in the
    memo (nothing is read).
    """
    import os
    import time
    from concurrent.futures import ThreadPoolExecutor

    def one(p):
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        return h.hexdigest()

    def signature(p):
        st = p.stat()
        return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]

    paths = [Path(p) for p in paths]
    known: dict = {}
    if memo is not None and os.name != "nt":  # Windows: st_ctime is the creation time
        try:
            known = json.loads(memo.read_text())
        except (OSError, ValueError):
            known = {}
        if not isinstance(known, dict):
            known = {}
    else:
        memo = None
    keys = {p: str(p.resolve()) for p in paths}
    sigs = {p: signature(p) for p in paths}

    def trusted(entry, sig):
        return (
            isinstance(entry, dict)
            and entry.get("signature") == sig
            and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("recorded_ns"), int)
            and sig[3] < entry["recorded_ns"] - 1_000_000_000
        )

    out = {p: known[keys[p]]["sha256"] for p in paths if trusted(known.get(keys[p]), sigs[p])}
    todo = [p for p in paths if p not in out]
    if todo and memo_only:
        return None
    if todo:
        now = time.time_ns()
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            out.update(zip(todo, pool.map(one, todo), strict=True))
        if memo is not None:
            known.update(
                {
                    keys[p]: {"signature": sigs[p], "sha256": out[p], "recorded_ns": now}
                    for p in todo
                }
            )
            known = _pruned(known)
            _write_atomic(memo, json.dumps(known, indent=0, sort_keys=True))
    return {p: out[p] for p in paths}


def _pruned(memo: dict, keep: int = 1000) -> dict:
    """The memo without files that no longer exist, and at most the ``keep`` most recently
    recorded entries (it is read and rewritten whole)."""
    alive = [(k, v) for k, v in memo.items() if isinstance(v, dict) and Path(k).exists()]
    alive.sort(
        key=lambda kv: kv[1].get("recorded_ns", 0)
        if isinstance(kv[1].get("recorded_ns"), int)
        else 0,
        reverse=True,
    )
    return dict(alive[:keep])


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` beside ``path`` and rename it into place (a read-only or missing
    cache folder is not an error: the memo only saves time)."""
    import os
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError:
        pass


def _touch(marker: Path) -> None:
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("validated\n")
    except OSError:  # a read-only home: validate every time
        pass


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
                f"{folder}: both {found[0].name} and {found[1].name} exist; keep one file per "
                f"table."
            )
        path = found[0]
        db.files[table] = path
        if path.stat().st_size == 0:
            raise AnalysisError(
                f"{path}: the file is empty; expected a header row with the "
                f"columns {', '.join(c.name for c in SCHEMA[table])}."
            )
        if path.suffix == ".parquet":
            src = f"read_parquet({_sql_str(path)}, file_row_number=true)"
            row = "file_row_number + 1"
            db.con.execute(
                f"CREATE VIEW src_{table} AS SELECT * FROM read_parquet({_sql_str(path)})"
            )
        else:
            src = (
                f"read_csv({_sql_str(path)}, header=true, all_varchar=true, "
                "auto_detect=true, strict_mode=true)"
            )
            row = "row_number() OVER ()"
            db.con.execute(f"CREATE VIEW src_{table} AS SELECT * FROM {src}")
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
    tables = {
        r[0]
        for r in db.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog='src'"
        ).fetchall()
    }
    missing = [t for t in TABLES if t not in tables]
    if missing:
        raise AnalysisError(f"{db.location}: missing table(s) {', '.join(missing)}.")
    db.files = {"database": db.location}
    if "dataset_metadata" in tables:
        rows = db.con.execute("SELECT key, value FROM src.dataset_metadata").fetchall()
        db.metadata = {k: json.loads(v) for k, v in rows}
    for table in TABLES:
        db.con.execute(
            f"CREATE VIEW raw_{table} AS SELECT *, row_number() OVER () AS __row FROM src.{table}"
        )
        db.con.execute(f"CREATE VIEW src_{table} AS SELECT * FROM src.{table}")
        cols = [r[0] for r in db.con.execute(f"DESCRIBE raw_{table}").fetchall()]
        absent = [c.name for c in SCHEMA[table] if c.name not in cols]
        if absent:
            raise AnalysisError(
                f"{db.location}: table {table} misses column(s) {', '.join(absent)}."
            )


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# --------------------------------------------------------------------------- validation
_TEXT_TYPES = ("VARCHAR",)
_DATE_TYPES = (
    "DATE",
    "TIMESTAMP",
    "TIMESTAMP WITH TIME ZONE",
    "TIMESTAMP_NS",
    "TIMESTAMP_MS",
    "TIMESTAMP_S",
)
_INT_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
)


def _column_check(col: Column, col_type: str) -> str:
    """SQL predicate that is TRUE for a bad value of ``col`` stored as ``col_type``.

    Typed columns (Parquet, DuckDB) need only the cheap checks their type leaves open;
    text columns (CSV) are parsed with TRY_CAST."""
    c = f'"{col.name}"'
    is_text = col_type in _TEXT_TYPES
    txt = f"CAST({c} AS VARCHAR)"
    empty = f"({c} IS NULL OR trim({c}) = '')" if is_text else f"({c} IS NULL)"
    if col.kind in ("id", "text"):
        return empty
    if col.kind == "vocab":
        vocab = ", ".join(_sql_str(v) for v in col.vocabulary)
        return f"({empty} OR {txt} NOT IN ({vocab}))"
    if col.kind == "integer":
        if col_type in _INT_TYPES:
            return f"({c} IS NULL OR {c} < {col.low} OR {c} > {col.high})"
        num = f"TRY_CAST({txt} AS DOUBLE)"
        return (
            f"({empty} OR {num} IS NULL OR {num} <> floor({num}) "
            f"OR {num} < {col.low} OR {num} > {col.high})"
        )
    if col.kind == "date":
        if col_type in _DATE_TYPES:
            return f"({c} IS NULL)"
        return f"({empty} OR TRY_CAST({txt} AS DATE) IS NULL)"
    if col.kind == "optional_date":
        if col_type in _DATE_TYPES:
            return "FALSE"
        return f"(NOT {empty} AND TRY_CAST({txt} AS DATE) IS NULL)"
    raise ValueError(col.kind)


def _column_types(db: Database, table: str) -> dict[str, str]:
    if table in db.column_types:
        return db.column_types[table]
    return {r[0]: r[1] for r in db.con.execute(f"DESCRIBE raw_{table}").fetchall()}


_PG_TYPES = {
    "date": "DATE",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "smallint": "SMALLINT",
    "text": "VARCHAR",
    "character varying": "VARCHAR",
    "character": "VARCHAR",
    "timestamp without time zone": "TIMESTAMP",
    "timestamp with time zone": "TIMESTAMP WITH TIME ZONE",
    "double precision": "DOUBLE",
    "numeric": "DOUBLE",
    "real": "DOUBLE",
}


_SPARK_TYPES = {
    "bigint": "BIGINT",
    "int": "INTEGER",
    "smallint": "SMALLINT",
    "tinyint": "TINYINT",
    "string": "VARCHAR",
    "date": "DATE",
    "double": "DOUBLE",
    "timestamp": "TIMESTAMP",
    "timestamp_ntz": "TIMESTAMP",
}


def _open_spark(url: str, *, validate: bool) -> Database:
    """A Spark session over a contract folder of Parquet files (see engines.SparkConnection)."""
    from analysis.engines import SparkConnection

    con = SparkConnection(url)
    db = Database(location=Path(con.path), con=con)
    db.url = url
    folder = con.path
    meta = Path(folder) / METADATA_FILE
    if meta.exists():
        db.metadata = json.loads(meta.read_text())
    db.files = {"database": url}
    for t in TABLES:
        path = f"{folder.rstrip('/')}/{t}.parquet"
        if "://" not in path and not Path(path).exists():
            raise AnalysisError(
                f"{url}: no {t}.parquet in {folder} (Spark reads Parquet contract files)."
            )
        con.spark.read.parquet(path).createOrReplaceTempView(f"src_{t}")
        con.execute(
            f"CREATE TEMP VIEW raw_{t} AS SELECT *, row_number() OVER () AS __row FROM src_{t}"
        )
        cols = con.spark.table(f"src_{t}").dtypes
        db.column_types[t] = {c: _SPARK_TYPES.get(d, d.upper()) for c, d in cols}
        absent = [c.name for c in SCHEMA[t] if c.name not in db.column_types[t]]
        if absent:
            raise AnalysisError(f"{url}: table {t} misses column(s) {', '.join(absent)}.")
    if validate:
        validate_database(db)
    _create_typed_views(db)
    return db


def _open_postgres(url: str, *, validate: bool) -> Database:
    """A database on a PostgreSQL server (tables in the URL's schema, default public)."""
    from analysis.engines import PostgresConnection, redact

    con = PostgresConnection(url)
    db = Database(
        location=Path(redact(url).split("?")[0].replace("postgresql://", "postgresql/")), con=con
    )
    db.url = redact(url)
    try:
        schema = con.schema
        tables = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            ).fetchall()
        }
        missing = [t for t in TABLES if t not in tables]
        if missing:
            raise AnalysisError(
                f"{db.url}: schema {schema} has no table(s) {', '.join(missing)}. "
                "Load a contract folder with: python -m analysis load --data FOLDER --into URL"
            )
        if "dataset_metadata" in tables:
            rows = con.execute(f'SELECT key, value FROM "{schema}".dataset_metadata').fetchall()
            db.metadata = {k: json.loads(v) for k, v in rows}
        db.files = {"database": db.url}
        for t in TABLES:
            cols = con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s",
                (schema, t),
            ).fetchall()
            db.column_types[t] = {c: _PG_TYPES.get(d, d.upper()) for c, d in cols}
            absent = [c.name for c in SCHEMA[t] if c.name not in db.column_types[t]]
            if absent:
                raise AnalysisError(f"{db.url}: table {t} misses column(s) {', '.join(absent)}.")
            con.execute(f'CREATE TEMP VIEW src_{t} AS SELECT * FROM "{schema}"."{t}"')
            con.execute(
                f"CREATE TEMP VIEW raw_{t} AS SELECT *, row_number() OVER () AS __row FROM src_{t}"
            )
        if validate:
            validate_database(db)
        _create_typed_views(db)
    except Exception:
        con.close()
        raise
    return db


def validate_database(db: Database, *, today: dt.date | None = None, fast: bool = True) -> None:
    """Check every table against the contract; raise one error listing every problem.

    Refused: missing or unparseable values, values outside their vocabulary or range,
    duplicate ``patient_id``, events of unknown patients, events before the patient's
    birth, events or births after the extract date (``dataset.json``: ``extract_date``)
    or after today. Events after the analysis index date are *not* refused: the
    definitions ignore them.

    Cost: one scan per table counting every kind of problem at once, and one join of the
    event tables with ``patients``; rows are listed only when a count is not zero. With
    ``fast`` (the default), :mod:`analysis.validate_fast` answers what Parquet statistics
    settle without a scan and does the join as an array lookup where the ids allow; the
    counts are the same either way.
    """
    today = today or dt.date.today()
    ceiling = today
    if db.metadata.get("extract_date"):
        ceiling = min(ceiling, dt.date.fromisoformat(str(db.metadata["extract_date"])))
    stats = {t: {} for t in TABLES}
    if fast:
        for table, path in db.files.items():
            if table in stats and Path(path).suffix == ".parquet":
                stats[table] = validate_fast.parquet_column_stats(path)
    problems: list[str] = []
    counts = 0
    for table in TABLES:
        where = db.files.get(table, db.location)
        types = _column_types(db, table)
        checks = []
        for col in SCHEMA[table]:
            col_type = types.get(col.name, "VARCHAR")
            if fast and (
                validate_fast.settled_by_stats(col, col_type, stats[table].get(col.name))
                or _vocabulary_settled(db, table, col)
            ):
                continue
            checks.append((col, _column_check(col, col_type)))
        checks = [(col, pred) for col, pred in checks if pred != "FALSE"]
        if not checks:
            continue
        select = ", ".join(f"count(*) FILTER (WHERE {pred})" for _, pred in checks)
        n_bad = db.con.execute(f"SELECT {select} FROM src_{table}").fetchone()
        for (col, pred), n in zip(checks, n_bad, strict=True):
            if not n:
                continue
            counts += n
            rows = db.con.execute(
                f'SELECT __row, CAST("{col.name}" AS VARCHAR) FROM raw_{table} WHERE {pred} '
                f"ORDER BY __row LIMIT {MAX_LISTED_PROBLEMS}"
            ).fetchall()
            problems.extend(_problem(where, table, col.name, r, v, col.expected) for r, v in rows)
    # relational checks run as well (on values that parse), so one run lists every problem

    all_types = {t: _column_types(db, t) for t in TABLES}
    lookup = None
    if fast and _is_duckdb(db.con):
        lookup = validate_fast.event_checks(
            db.con, all_types, TABLES[1:], ceiling, db.files, patient_stats=stats["patients"]
        )

    pfile = db.files.get("patients", db.location)
    pt = all_types["patients"]
    birth = "birth_date" if pt.get("birth_date") in _DATE_TYPES else "TRY_CAST(birth_date AS DATE)"
    reg_from = (
        "registered_from"
        if pt.get("registered_from") in _DATE_TYPES
        else "TRY_CAST(registered_from AS DATE)"
    )
    reg_to = (
        "registered_to"
        if pt.get("registered_to") in _DATE_TYPES
        else "TRY_CAST(CAST(registered_to AS VARCHAR) AS DATE)"
    )
    ps = stats["patients"]
    latest_birth = (
        validate_fast.latest(ps.get("birth_date")) if pt.get("birth_date") == "DATE" else None
    )
    reg_settled = (
        pt.get("registered_from") == "DATE"
        and pt.get("registered_to") == "DATE"
        and _registration_settled(ps.get("registered_from"), ps.get("registered_to"))
    )
    wanted = {
        "dup": None
        if lookup
        else (
            "count(*) - (SELECT count(*) FROM (SELECT patient_id FROM src_patients "
            "WHERE patient_id IS NOT NULL GROUP BY patient_id) AS ids)"
        ),
        "birth": None
        if latest_birth and latest_birth <= ceiling
        else f"count(*) FILTER (WHERE {birth} > DATE '{ceiling}')",
        "reg": None if reg_settled else f"count(*) FILTER (WHERE {reg_to} < {reg_from})",
    }
    asked = {k: v for k, v in wanted.items() if v}
    got = (
        dict(
            zip(
                asked,
                db.con.execute(f"SELECT {', '.join(asked.values())} FROM src_patients").fetchone(),
                strict=True,
            )
        )
        if asked
        else {}
    )
    n_dup = lookup.duplicates if lookup else got.get("dup", 0)
    n_birth, n_reg = got.get("birth", 0), got.get("reg", 0)
    if n_dup:
        q = (
            "SELECT __row, CAST(patient_id AS VARCHAR) FROM raw_patients WHERE patient_id IN "
            "(SELECT patient_id FROM raw_patients GROUP BY patient_id HAVING count(*) > 1) "
            f"ORDER BY __row LIMIT {MAX_LISTED_PROBLEMS}"
        )
        dup_rows = db.con.execute(q).fetchall()
        counts += len(dup_rows) if n_dup < len(dup_rows) else n_dup
        problems.extend(
            _problem(
                pfile, "patients", "patient_id", r, v, "a unique patient_id (this one repeats)"
            )
            for r, v in dup_rows
        )
    if n_birth:
        counts += n_birth
        for r, v in db.con.execute(
            f"SELECT __row, CAST(birth_date AS VARCHAR) FROM raw_patients "
            f"WHERE {birth} > DATE '{ceiling}' ORDER BY 1 LIMIT {MAX_LISTED_PROBLEMS}"
        ).fetchall():
            problems.append(
                _problem(
                    pfile,
                    "patients",
                    "birth_date",
                    r,
                    v,
                    f"a birth date not after {ceiling} (extract date or today)",
                )
            )
    if n_reg:
        counts += n_reg
        for r, v in db.con.execute(
            f"SELECT __row, CAST(registered_to AS VARCHAR) FROM raw_patients "
            f"WHERE {reg_to} < {reg_from} ORDER BY 1 LIMIT {MAX_LISTED_PROBLEMS}"
        ).fetchall():
            problems.append(
                _problem(
                    pfile, "patients", "registered_to", r, v, "a date on or after registered_from"
                )
            )

    # events: known patient, not before birth, not after the ceiling. One join of the
    # three event tables together against the patients (one hash table, not three), or
    # the array lookup; the per-table queries below run only to list the rows when a
    # count is not zero.
    same_type = len({all_types[t].get("patient_id") for t in TABLES}) == 1
    pid = "patient_id" if same_type else "CAST(patient_id AS VARCHAR)"
    edates = {}
    for table in TABLES[1:]:
        et = all_types[table]
        edates[table] = "date" if et.get("date") in _DATE_TYPES else "TRY_CAST(date AS DATE)"
    if lookup and not lookup.duplicates:
        found = lookup.events
    else:
        union = " UNION ALL ".join(
            f"SELECT {i} AS t, {pid} AS pid, {edates[table]} AS d FROM src_{table}"
            for i, table in enumerate(TABLES[1:])
        )
        per_table = db.con.execute(
            f"SELECT e.t, count(*) FILTER (WHERE p.pid IS NULL AND e.pid IS NOT NULL), "
            f"count(*) FILTER (WHERE e.d < p.birth), count(*) FILTER (WHERE e.d > DATE "
            f"'{ceiling}') "
            f"FROM ({union}) e LEFT JOIN (SELECT {pid} AS pid, {birth} AS birth FROM "
            f"src_patients) p "
            f"ON e.pid = p.pid GROUP BY e.t"
        ).fetchall()
        found = {TABLES[1:][t]: (a, b, c) for t, a, b, c in per_table}
    for table in TABLES[1:]:
        n_unknown, n_before, n_after = found.get(table, (0, 0, 0))
        if not (n_unknown or n_before or n_after):
            continue
        edate = "e." + edates[table] if edates[table] == "date" else "TRY_CAST(e.date AS DATE)"
        joined = (
            f"FROM raw_{table} e LEFT JOIN (SELECT {pid} AS pid, {birth} AS birth FROM "
            f"raw_patients) p "
            f"ON {pid.replace('patient_id', 'e.patient_id')} = p.pid"
        )
        efile = db.files.get(table, db.location)
        for n, pred, col, value, expected in (
            (
                n_unknown,
                "p.pid IS NULL AND e.patient_id IS NOT NULL",
                "patient_id",
                "CAST(e.patient_id AS VARCHAR)",
                "'the patient_id of a patient in the patients table'",
            ),
            (
                n_before,
                f"{edate} < p.birth",
                "date",
                "CAST(e.date AS VARCHAR)",
                "'a date on or after the patient''s birth date ' || CAST(p.birth AS VARCHAR)",
            ),
            (
                n_after,
                f"{edate} > DATE '{ceiling}'",
                "date",
                "CAST(e.date AS VARCHAR)",
                f"'a date not after {ceiling} (extract date or today)'",
            ),
        ):
            if not n:
                continue
            counts += n
            for r, v, exp in db.con.execute(
                f"SELECT e.__row, {value}, {expected} {joined} WHERE {pred} "
                f"ORDER BY 1 LIMIT {MAX_LISTED_PROBLEMS}"
            ).fetchall():
                problems.append(_problem(efile, table, col, r, v, exp))
    if counts:
        _raise(problems, counts)


def _vocabulary_settled(db: Database, table: str, col: Column, most: int = 50) -> bool:
    """Whether every value of a vocabulary column is in its vocabulary, from its distinct
    values (a dictionary-encoded column groups 10x faster than a filter scans it)."""
    if col.kind != "vocab":
        return False
    values = db.con.execute(
        f'SELECT "{col.name}" FROM src_{table} GROUP BY "{col.name}" LIMIT {most + 1}'
    ).fetchall()
    return len(values) <= most and all(v[0] in col.vocabulary for v in values)


def _is_duckdb(con) -> bool:
    import duckdb

    return isinstance(con, duckdb.DuckDBPyConnection)


def _registration_settled(reg_from, reg_to) -> bool:
    """Whether Parquet statistics prove every registered_to on or after registered_from:
    no end date at all, or the earliest end not before the latest start."""
    if reg_to is None or reg_from is None or reg_from.nulls is None or reg_to.nulls is None:
        return False
    if reg_to.high is None and reg_to.low is None:  # no end date in any row
        return True
    earliest_end, latest_start = reg_to.low, validate_fast.latest(reg_from)
    return (
        validate_fast.is_date(earliest_end)
        and latest_start is not None
        and earliest_end >= latest_start
    )


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
    """Views with the contract's column names and types only, reading the files directly
    (columns already of the right type are passed through without a cast)."""
    con = db.con
    types = {t: _column_types(db, t) for t in TABLES}
    id_types = {types[t].get("patient_id") for t in TABLES}
    integer_ids = id_types <= set(_INT_TYPES)
    pid = (
        "patient_id"
        if integer_ids or len(id_types) == 1
        else "CAST(patient_id AS VARCHAR) AS patient_id"
    )

    def col(table, name, target):
        t = types[table].get(name)
        if target == "DATE" and t == "DATE" or target == "VARCHAR" and t == "VARCHAR":
            return name
        if target == "INTEGER" and t in _INT_TYPES:
            return f"CAST({name} AS INTEGER) AS {name}"
        if target == "INTEGER":
            return f"CAST(CAST({name} AS DOUBLE) AS INTEGER) AS {name}"
        if target == "OPTDATE":
            return name if t == "DATE" else f"TRY_CAST(CAST({name} AS VARCHAR) AS DATE) AS {name}"
        return f"CAST({name} AS {target}) AS {name}"

    spec = {
        "patients": [
            ("practice_id", "VARCHAR"),
            ("sex", "VARCHAR"),
            ("birth_date", "DATE"),
            ("registered_from", "DATE"),
            ("registered_to", "OPTDATE"),
        ],
        "diagnoses": [("date", "DATE"), ("code", "VARCHAR")],
        "pain_episodes": [
            ("date", "DATE"),
            ("site", "VARCHAR"),
            ("severity", "INTEGER"),
            ("cause", "VARCHAR"),
        ],
        "prescriptions": [("date", "DATE"), ("atc_code", "VARCHAR")],
    }
    for table, cols in spec.items():
        select = ", ".join([pid] + [col(table, n, t) for n, t in cols])
        con.execute(f"CREATE TEMP VIEW {table} AS SELECT {select} FROM src_{table}")


def marked_synthetic(metadata) -> bool:
    """Whether metadata say synthetic: only the JSON value ``true`` does (a string such as
    "false", or anything else, is not a mark; disclosure control fails closed)."""
    return isinstance(metadata, dict) and metadata.get("synthetic") is True


def is_synthetic(location) -> bool:
    """The one answer to "is this database synthetic?", for every engine and command: a
    folder or file by its ``dataset.json`` or Parquet metadata, a server database by its
    ``dataset_metadata`` table (written by ``load``). Unreachable: not synthetic."""
    from analysis.engines import is_url

    if is_url(location):
        try:
            db = open_database(location, validate=False)
        except AnalysisError:
            return False
        try:
            return db.is_synthetic
        finally:
            db.close()
    return is_marked_synthetic(location)


def is_marked_synthetic(location: str | Path) -> bool:
    """Whether a data location says it is synthetic (``dataset.json`` or Parquet metadata),
    without opening or validating it."""
    location = Path(location)
    meta = location / METADATA_FILE
    if meta.exists():
        try:
            return marked_synthetic(json.loads(meta.read_text()))
        except json.JSONDecodeError:
            return False
    pq_file = location / "patients.parquet"
    if pq_file.exists():
        import pyarrow.parquet as pq

        return (pq.read_schema(pq_file).metadata or {}).get(b"synthetic") == b"true"
    return False
