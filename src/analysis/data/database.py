"""Open a database in the contract (a folder of files, a DuckDB file, a PostgreSQL schema or a
Spark folder), validate it before anything is computed, and expose typed views of its tables."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

from analysis import paths
from analysis.codelists import DEFAULT_DIAGNOSIS_VOCABULARY
from analysis.contract import SCHEMA, TABLES
from analysis.credentials import refuse_passwords
from analysis.data.digests import _cache_folder, remembered_digests, sha256_files
from analysis.data.validate import (
    _INT_TYPES,
    _column_types,
    _first_line,
    _sql_str,
    validate_database,
)
from analysis.engines import (
    DuckDBEngine,
    PostgresConnection,
    SparkConnection,
    is_url,
    redact,
    sql_identifier,
)
from analysis.errors import AnalysisError
from analysis.files import atomic_write_text

METADATA_FILE = "dataset.json"


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
    con = DuckDBEngine()
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


def _validation_marker(db: Database, *, memo_only: bool = False) -> Path | None:
    """Where a successful validation of exactly these files is remembered (None: the
    cache is off; with ``memo_only``, also None when a file's digest is not remembered).

    The key is the sha256 of every input file's content (two files at a time; nothing
    when a file's inode,
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
    here = Path(__file__).parent
    for code in sorted(here.glob("*.py")):  # the validation code itself (fast routes too)
        h.update(Path(code).read_bytes())
    return folder / "validated" / f"{h.hexdigest()}.ok"


def _touch(marker: Path) -> None:
    try:
        atomic_write_text(marker, "validated\n")
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
        _validate_spark_once(db, folder)
    _create_typed_views(db)
    return db


def _validate_spark_once(db: Database, folder: str) -> None:
    """Validate a Spark source unless these exact files were validated before: a local
    folder's Parquet files are the files DuckDB reads, so the marker of their content
    (:func:`_validation_marker`) is shared by both engines (the checks are the same
    code); a remote folder is validated every time."""
    import dataclasses

    if "://" in folder:
        validate_database(db)
        return
    files = {t: Path(folder) / f"{t}.parquet" for t in TABLES}
    marker = _validation_marker(dataclasses.replace(db, files=files))
    if marker is not None and marker.exists():
        return
    validate_database(db)
    if marker is not None:
        _touch(marker)


def _open_postgres(url: str, *, validate: bool) -> Database:
    """A database on a PostgreSQL server (tables in the URL's schema, default public)."""

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
            rows = con.execute(
                f"SELECT key, value FROM {sql_identifier(schema)}.dataset_metadata"
            ).fetchall()
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
            con.execute(
                f"CREATE TEMP VIEW src_{t} AS SELECT * FROM "
                f"{sql_identifier(schema)}.{sql_identifier(t)}"
            )
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

    target = {
        "text": "VARCHAR",
        "vocab": "VARCHAR",
        "date": "DATE",
        "optional_date": "OPTDATE",
        "integer": "INTEGER",
    }
    spec = {t: [(c.name, target[c.kind]) for c in SCHEMA[t] if c.kind != "id"] for t in TABLES}
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

    folder = _local_spark_folder(location)
    if folder is not None:  # the folder's own files answer: no JVM started for it
        return _spark_folder_synthetic(folder)
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


def _local_spark_folder(location) -> Path | None:
    """The local contract folder a ``spark://...?path=/folder`` URL reads, else None."""
    text = str(location)
    if not text.lower().startswith("spark://"):
        return None
    path = (parse_qs(text.partition("?")[2]).get("path") or [""])[0]  # as SparkEngine reads it
    return Path(path) if path and "://" not in path else None


def _spark_folder_synthetic(folder: Path) -> bool:
    """What a Spark database over ``folder`` says of itself, read from its files as
    :func:`_open_spark` reads them: its ``dataset.json``, every table's Parquet file present
    (else it does not open: not synthetic)."""
    if not all((folder / f"{t}.parquet").exists() for t in TABLES):
        return False
    meta = folder / METADATA_FILE
    try:
        return meta.exists() and marked_synthetic(json.loads(meta.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


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
