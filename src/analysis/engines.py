"""Where the data live: embedded DuckDB (files, a DuckDB file) or a PostgreSQL server.

A data source is one ``--data`` value: a folder of contract files, a ``.duckdb`` file, or
``postgresql://user@host:port/database[?schema=NAME&password_env=VAR]``. The password never
comes in the URL: it is read from ``PGPASSWORD`` (or the variable ``password_env`` names),
so it can never land in an executed notebook's parameters, a manifest or a log.

Every engine runs the same SQL (the cohort and validation queries use a subset common to
DuckDB and PostgreSQL: EXTRACT, sum/count with FILTER, bit_or, starts_with, explicit
GROUP BY); only aggregates come back.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlparse

import numpy as np

from analysis.credentials import redact  # noqa: F401  (re-exported)
from analysis.errors import AnalysisError


def _sql_text(value, what: str) -> str:
    text = str(value)
    if "\x00" in text:
        raise AnalysisError(f"A {what} holds a NUL character: {text[:40]!r}; refused.")
    return text


def sql_literal(value) -> str:
    """A SQL string literal (single quotes doubled; a NUL refused): with
    :func:`sql_identifier`, the one way text from outside (a path, a sheet, a code, a
    reader option) enters SQL where a bound parameter cannot (a view, ATTACH, COPY)."""
    return "'" + _sql_text(value, "SQL text value").replace("'", "''") + "'"


def sql_list(values) -> str:
    """Comma-separated SQL string literals, for ``IN (...)``."""
    return ", ".join(sql_literal(v) for v in values)


def sql_identifier(name) -> str:
    """A quoted SQL identifier (double quotes doubled)."""
    return '"' + _sql_text(name, "SQL name").replace('"', '""') + '"'


def is_url(location) -> bool:
    """A database URL (any letter case of the scheme), not a path."""
    return str(location).strip().lower().startswith(("postgresql://", "postgres://", "spark://"))


class Engine:
    """The one interface every engine offers the rest of the package: ``execute(sql)``
    (a result with ``fetchall``, ``fetchone``, ``fetchnumpy``, ``df``),
    ``create_temp_table(name, select_sql)``, ``cursor()`` (a second handle for another
    thread, or None where the engine has none), ``close()``, and ``fast_routes`` (whether
    the DuckDB-only fast validation may read the engine's files). Nothing outside this
    module asks which engine it talks to."""

    name = "engine"
    fast_routes = False

    def execute(self, sql: str, params=None):  # pragma: no cover - interface
        raise NotImplementedError

    def create_temp_table(self, name: str, select_sql: str) -> None:
        self.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {select_sql}")

    def cursor(self):
        return None

    def close(self) -> None:  # pragma: no cover - interface
        pass


class DuckDBEngine(Engine):
    """Embedded DuckDB over files (the default): DuckDB's own results, threads by cursor."""

    name = "duckdb"
    fast_routes = True

    def __init__(self, con=None):
        import duckdb

        self.con = duckdb.connect(":memory:") if con is None else con

    def execute(self, sql: str, params=None):
        return self.con.execute(sql, params) if params is not None else self.con.execute(sql)

    def cursor(self) -> DuckDBEngine:
        return DuckDBEngine(self.con.cursor())

    def fetch_record_batches(self, sql: str, rows: int):
        """Arrow record batches of a query (streamed)."""
        return self.con.execute(sql).fetch_record_batch(rows)

    def close(self) -> None:
        self.con.close()


class Result:
    """A DB-API cursor with the DuckDB result methods the module uses."""

    def __init__(self, cur):
        self.cur = cur

    def fetchall(self):
        return self.cur.fetchall() if self.cur.description else []

    def fetchone(self):
        return self.cur.fetchone()

    def fetchnumpy(self):
        names = [d.name for d in self.cur.description]
        rows = self.cur.fetchall()
        cols = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
        return {
            n: np.array(c, dtype=object if c and isinstance(c[0], str) else None)
            for n, c in zip(names, cols, strict=True)
        }

    def df(self):
        import pandas as pd

        names = [d.name for d in self.cur.description]
        return pd.DataFrame(self.cur.fetchall(), columns=names)


class PostgresEngine(Engine):
    """A PostgreSQL server through psycopg; ``execute`` returns a :class:`Result`."""

    name = "postgres"

    def __init__(self, url: str):
        try:
            import psycopg
        except ImportError:
            raise AnalysisError(
                "PostgreSQL data sources need psycopg: pip install -e '.[postgres]' "
                "(`make env` installs every extra)."
            ) from None

        u = urlparse(url)
        if u.password:
            raise AnalysisError(
                "The database URL must not hold the password (it would be written to "
                "notebooks and logs): remove it and set PGPASSWORD, or name another "
                "variable with ?password_env=VAR."
            )
        q = parse_qs(u.query)
        env = q.get("password_env", ["PGPASSWORD"])[0]
        self.schema = q.get("schema", ["public"])[0]
        kwargs = {
            "host": u.hostname or "localhost",
            "port": u.port or 5432,
            "dbname": (u.path or "/").lstrip("/") or None,
            "user": u.username,
        }
        password = os.environ.get(env)
        if password:
            kwargs["password"] = password
        try:
            self.conn = psycopg.connect(
                **{k: v for k, v in kwargs.items() if v is not None}, autocommit=True
            )
        except psycopg.Error as exc:
            msg = str(exc).replace(password, "***") if password else str(exc)
            raise AnalysisError(
                f"Could not connect to {redact(url)}: {msg.strip().splitlines()[0]}"
            ) from None

    def execute(self, sql: str, params=None) -> Result:
        cur = self.conn.cursor()
        cur.execute(sql, params or None)
        return Result(cur)

    def create_temp_table(self, name: str, select_sql: str) -> None:
        self.execute(f"DROP TABLE IF EXISTS {name}")
        self.execute(f"CREATE TEMP TABLE {name} AS {select_sql}")

    def close(self) -> None:
        self.conn.close()


class SparkEngine(Engine):
    """A Spark session (local mode or a cluster master) over a contract folder of Parquet
    files: ``spark://local[2]?path=/data/folder`` or ``spark://host:7077?path=hdfs://...``.

    The module's SQL runs through ``spark.sql`` after sqlglot has translated it from DuckDB's
    dialect (:meth:`translate`)."""

    name = "spark"

    def __init__(self, url: str):
        import re

        rest = url[len("spark://") :]
        master, _, query = rest.partition("?")
        q = parse_qs(query)
        if "path" not in q:
            raise AnalysisError(
                "A Spark data source names its contract folder: spark://local[2]?path=/abs/folder"
            )
        self.path = q["path"][0]
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise AnalysisError(
                "Spark data sources need pyspark and sqlglot: pip install -e '.[spark]' "
                "(`make env` installs every extra)."
            ) from None
        spark_master = master if master.startswith("local") else f"spark://{master}"
        try:
            self.spark = (
                SparkSession.builder.master(spark_master)
                .appName("analysis")
                .config("spark.ui.enabled", "false")
                .config("spark.sql.shuffle.partitions", "8")
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.sql.session.timeZone", "UTC")
                .getOrCreate()
            )
        except Exception as exc:
            raise AnalysisError(
                f"Could not start Spark ({spark_master}): {str(exc).splitlines()[0]}"
            ) from None
        self.spark.sparkContext.setLogLevel("ERROR")
        self._re = re

    def translate(self, sql: str) -> str:
        """The module's SQL (DuckDB's dialect) in Spark's, by sqlglot; then what Spark asks
        beyond a translation: a temporary table is a temporary view that replaces any of
        the same name, and ``row_number()`` needs an order (the read order)."""
        import sqlglot

        out = sqlglot.transpile(sql, read="duckdb", write="spark")[0]
        out = self._re.sub(
            r"^CREATE (OR REPLACE )?TEMPORARY (VIEW|TABLE)", "CREATE OR REPLACE TEMPORARY VIEW", out
        )
        return out.replace(
            "ROW_NUMBER() OVER ()", "ROW_NUMBER() OVER (ORDER BY MONOTONICALLY_INCREASING_ID())"
        )

    def execute(self, sql: str, params=None) -> SparkResult:
        if params:
            raise ValueError("parameters are not supported on Spark")
        try:
            return SparkResult(self.spark.sql(self.translate(sql)))
        except Exception as exc:
            raise AnalysisError(
                f"Spark could not run a query: {str(exc).splitlines()[0][:300]}"
            ) from None

    def close(self) -> None:
        pass  # the session is reused by later queries in the same process


class SparkResult:
    def __init__(self, df):
        self.sdf = df
        self._rows = None

    def _collect(self):
        if self._rows is None:
            try:
                self._rows = [tuple(r) for r in self.sdf.collect()] if self.sdf.columns else []
            except Exception as exc:
                raise AnalysisError(
                    f"Spark could not run a query: {str(exc).splitlines()[0][:300]}"
                ) from None
        return self._rows

    def fetchall(self):
        return self._collect()

    def fetchone(self):
        rows = self._collect()
        return rows[0] if rows else None

    def fetchnumpy(self):
        rows = self._collect()
        names = self.sdf.columns
        cols = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
        return {
            n: np.array(c, dtype=object if c and isinstance(c[0], str) else None)
            for n, c in zip(names, cols, strict=True)
        }

    def df(self):
        import pandas as pd

        return pd.DataFrame(self._collect(), columns=self.sdf.columns)


def create_temp_table(con, name: str, select_sql: str) -> None:
    """``CREATE OR REPLACE TEMP TABLE name AS select`` on any engine."""
    con.create_temp_table(name, select_sql)


# the names used before the engines became classes behind one interface
PostgresConnection = PostgresEngine
SparkConnection = SparkEngine


def source_name(data) -> str:
    """A data source as a report names it: a folder's name, or a URL without secrets."""
    from pathlib import Path

    if data in (None, ""):
        return "synthetic"
    return redact(str(data)) if is_url(data) else Path(data).name


def engine_label(data) -> str:
    """The engine that reads a data source, in words."""
    text = str(data or "")
    if text.startswith(("postgresql://", "postgres://")):
        return "PostgreSQL"
    if text.startswith("spark://"):
        return "Apache Spark (SQL translated from DuckDB's dialect by sqlglot)"
    return "DuckDB"
