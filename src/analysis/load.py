"""Copy a contract folder into a database server: ``python -m analysis load --data FOLDER
--into URL``. The folder is validated first; tables are created with the contract's types
(and a ``dataset_metadata`` table carrying ``dataset.json``), replacing any of the same
name in the URL's schema, in one transaction."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from analysis.contract import TABLES, pg_columns
from analysis.data import open_database
from analysis.engines import PostgresConnection, redact, sql_identifier
from analysis.errors import AnalysisError


def load_into(folder: str | Path, url: str) -> dict:
    """Copy every table of ``folder`` into the server at ``url``; returns rows per table."""
    if not str(url).startswith(("postgresql://", "postgres://")):
        raise AnalysisError(f"--into must be a postgresql:// URL, got {redact(url)}")
    src = open_database(folder)
    pg = PostgresConnection(url)
    schema = pg.schema
    id_type = (
        "BIGINT"
        if src.con.execute(
            "SELECT column_type FROM (DESCRIBE patients) WHERE column_name = 'patient_id'"
        ).fetchone()[0]
        in ("BIGINT", "INTEGER", "SMALLINT")
        else "TEXT"
    )
    counts = {}
    try:
        with pg.conn.transaction(), tempfile.TemporaryDirectory() as tmp:
            cur = pg.conn.cursor()
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {sql_identifier(schema)}")
            for t in TABLES:
                cols = pg_columns(t, id_type)
                cur.execute(f"DROP TABLE IF EXISTS {sql_identifier(schema)}.{sql_identifier(t)}")
                cur.execute(
                    f"CREATE TABLE {sql_identifier(schema)}.{sql_identifier(t)} ("
                    + ", ".join(f'"{c}" {typ}' for c, typ in cols)
                    + ")"
                )
                csv_path = Path(tmp) / f"{t}.csv"
                names = ", ".join(c for c, _ in cols)
                src.con.execute(
                    f"COPY (SELECT {names} FROM {t}) TO '{csv_path}' (HEADER false, DELIMITER ',')"
                )
                with (
                    cur.copy(
                        f"COPY {sql_identifier(schema)}.{sql_identifier(t)} ({names}) "
                        "FROM STDIN WITH (FORMAT csv)"
                    ) as cp,
                    open(csv_path, "rb") as fh,
                ):
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        cp.write(block)
                counts[t] = cur.execute(
                    f"SELECT count(*) FROM {sql_identifier(schema)}.{sql_identifier(t)}"
                ).fetchone()[0]
            cur.execute(f"DROP TABLE IF EXISTS {sql_identifier(schema)}.dataset_metadata")
            cur.execute(
                f"CREATE TABLE {sql_identifier(schema)}.dataset_metadata "
                "(key TEXT PRIMARY KEY, value TEXT)"
            )
            for k, v in src.metadata.items():
                cur.execute(
                    f"INSERT INTO {sql_identifier(schema)}.dataset_metadata VALUES (%s, %s)",
                    (k, json.dumps(v)),
                )
            for t in TABLES[1:]:
                cur.execute(
                    f"CREATE INDEX ON {sql_identifier(schema)}.{sql_identifier(t)} (patient_id)"
                )
            cur.execute(f"ANALYZE {sql_identifier(schema)}.patients")
    finally:
        src.close()
        pg.close()
    return counts
