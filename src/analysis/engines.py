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

from analysis.errors import AnalysisError


def is_url(location) -> bool:
    return str(location).startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without any password (for messages and manifests)."""
    u = urlparse(str(url))
    if u.password:
        netloc = u.netloc.replace(f":{u.password}@", ":***@")
        return u._replace(netloc=netloc).geturl()
    return str(url)


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
        return {n: np.array(c, dtype=object if c and isinstance(c[0], str) else None) for n, c in zip(names, cols, strict=True)}

    def df(self):
        import pandas as pd

        names = [d.name for d in self.cur.description]
        return pd.DataFrame(self.cur.fetchall(), columns=names)


class PostgresConnection:
    """psycopg connection with ``execute`` returning a :class:`Result`."""

    dialect = "postgres"

    def __init__(self, url: str):
        import psycopg

        u = urlparse(url)
        if u.password:
            raise AnalysisError("The database URL must not hold the password (it would be written to "
                                "notebooks and logs): remove it and set PGPASSWORD, or name another "
                                "variable with ?password_env=VAR.")
        q = parse_qs(u.query)
        env = q.get("password_env", ["PGPASSWORD"])[0]
        self.schema = q.get("schema", ["public"])[0]
        kwargs = {"host": u.hostname or "localhost", "port": u.port or 5432,
                  "dbname": (u.path or "/").lstrip("/") or None, "user": u.username}
        password = os.environ.get(env)
        if password:
            kwargs["password"] = password
        try:
            self.conn = psycopg.connect(**{k: v for k, v in kwargs.items() if v is not None}, autocommit=True)
        except psycopg.Error as exc:
            msg = str(exc).replace(password, "***") if password else str(exc)
            raise AnalysisError(f"Could not connect to {redact(url)}: {msg.strip().splitlines()[0]}") from None

    def execute(self, sql: str, params=None) -> Result:
        cur = self.conn.cursor()
        cur.execute(sql, params or None)
        return Result(cur)

    def close(self) -> None:
        self.conn.close()


def create_temp_table(con, name: str, select_sql: str) -> None:
    """``CREATE OR REPLACE TEMP TABLE name AS select`` on any engine."""
    if getattr(con, "dialect", "duckdb") == "postgres":
        con.execute(f"DROP TABLE IF EXISTS {name}")
        con.execute(f"CREATE TEMP TABLE {name} AS {select_sql}")
    else:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {select_sql}")


def create_temp_table_columns(con, name: str, columns: str) -> None:
    if getattr(con, "dialect", "duckdb") == "postgres":
        con.execute(f"DROP TABLE IF EXISTS {name}")
        con.execute(f"CREATE TEMP TABLE {name} ({columns})")
    else:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} ({columns})")
