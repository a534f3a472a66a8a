"""The same figures from every engine: embedded DuckDB over files, a DuckDB file, and a
real PostgreSQL server (started by .ci/run; skipped where none is configured). Dates agree
on every engine with an independent pandas computation."""

import datetime as dt
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.params import Params
from analysis.study import run_study
from conftest import dx, pain, patient, write_db

PG_URL = os.environ.get("ANALYSIS_TEST_PG_URL")
needs_pg = pytest.mark.skipif(not PG_URL, reason="no PostgreSQL server (set ANALYSIS_TEST_PG_URL; .ci/run does)")


def with_schema(url, schema):
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def figures(data, *extra):
    r = subprocess.run([sys.executable, "-m", "analysis", "figures", "--data", str(data), "--json", *extra],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@needs_pg
def test_postgres_gives_the_same_figures_as_the_files(default_db):
    url = with_schema(PG_URL, "synthetic_default")
    r = subprocess.run([sys.executable, "-m", "analysis", "load", "--data", str(default_db), "--into", url],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert figures(url) == figures(default_db)
    assert figures(url, "--set", "elderly_age=80") == figures(default_db, "--set", "elderly_age=80")


def test_a_password_in_the_url_is_refused():
    with pytest.raises(AnalysisError, match="holds a database password"):
        run_study("postgresql://someone:secret@127.0.0.1:5432/db")


# ---- dates that agree on every engine ---------------------------------------------------
EDGE_BIRTHS = {1: "1940-02-29", 2: "1940-12-31", 3: "1941-01-01", 4: "1950-06-15"}
EDGE_PAIN = {  # patient 4's qualifying episodes: window start, the day before, the index day
    "2006-01-01": True, "2005-12-31": False, "2015-12-31": True, "2016-01-01": False}


def edge_db(folder):
    """The edge-case database kept in data/edge_cases (the constants above describe it;
    a test checks the files say the same)."""
    import shutil

    from conftest import ROOT

    shutil.copytree(ROOT / "data" / "edge_cases", folder)
    return folder


def test_the_stored_edge_case_database_is_the_one_described(tmp_path):
    want = write_db(tmp_path / "want", {"patients": [patient(i, birth=b) for i, b in EDGE_BIRTHS.items()],
                                        "pain_episodes": [pain(4, date=d) for d in EDGE_PAIN],
                                        "diagnoses": [dx(4, "401.9", "2000-01-01")]})
    got = edge_db(tmp_path / "got")
    for t in ("patients", "diagnoses", "pain_episodes", "prescriptions"):
        assert (got / f"{t}.csv").read_text() == (want / f"{t}.csv").read_text()


def ages_by_pandas(index_date):
    idx = dt.date.fromisoformat(index_date)
    out = {}
    for pid, b in EDGE_BIRTHS.items():
        bd = dt.date.fromisoformat(b)
        out[pid] = idx.year - bd.year - ((idx.month, idx.day) < (bd.month, bd.day))
    return sorted(out.values())


INDEX_DATES = ["2015-02-28", "2015-03-01", "2016-02-29", "2015-12-31", "2016-01-01"]


def engine_ages(data, index_date):
    s = run_study(data, Params(index_date=index_date, disclosure="off"))
    c = s.cube.columns
    return sorted(a for a, n in zip(c["age"], c["n"], strict=True) for _ in range(int(n)))


@pytest.mark.parametrize("index_date", INDEX_DATES)
def test_age_in_completed_years_on_duckdb_equals_pandas(tmp_path, index_date):
    assert engine_ages(edge_db(tmp_path / "edge"), index_date) == ages_by_pandas(index_date)


def test_the_window_ends_on_duckdb(tmp_path):
    s = run_study(edge_db(tmp_path / "edge"), Params(disclosure="off"))
    c = s.cube.columns
    q = int(c["q4"][c["age"] == 65][0])
    assert q == sum(EDGE_PAIN.values())  # both ends in, the day before and after out


@needs_pg
@pytest.mark.parametrize("index_date", INDEX_DATES)
def test_age_in_completed_years_on_postgres_equals_pandas(tmp_path, index_date):
    from analysis.load import load_into

    url = with_schema(PG_URL, "edge_dates")
    load_into(edge_db(tmp_path / "edge"), url)
    assert engine_ages(url, index_date) == ages_by_pandas(index_date)
    s = run_study(url, Params(disclosure="off"))
    c = s.cube.columns
    assert int(c["q4"][c["age"] == 65][0]) == sum(EDGE_PAIN.values())


def test_pandas_reference_by_hand():
    assert ages_by_pandas("2015-02-28") == [64, 74, 74, 74]  # 29 Feb 1940: not yet 75
    assert ages_by_pandas("2016-02-29") == sorted([76, 75, 75, 65])
    pd.Timestamp("2016-02-29")  # a real date


# ---- Spark (local mode) --------------------------------------------------------------------
def _spark_available():
    import importlib.util
    import shutil

    return importlib.util.find_spec("pyspark") is not None and shutil.which("java") is not None


needs_spark = pytest.mark.skipif(not _spark_available(), reason="Spark needs pyspark and Java 17")


def spark_url(folder):
    return f"spark://local[2]?path={folder}"


@needs_spark
@pytest.mark.slow
def test_spark_gives_the_same_figures_as_the_files(default_db):
    assert figures(spark_url(default_db)) == figures(default_db)


@needs_spark
@pytest.mark.slow
@pytest.mark.parametrize("index_date", INDEX_DATES)
def test_age_in_completed_years_on_spark_equals_pandas(tmp_path, index_date):
    csv_db = edge_db(tmp_path / "edge")
    pq_db = tmp_path / "edge_parquet"
    pq_db.mkdir()
    import duckdb

    casts = {"patient_id": "BIGINT", "date": "DATE", "birth_date": "DATE", "registered_from": "DATE",
             "registered_to": "DATE", "severity": "INTEGER"}
    for t in ("patients", "diagnoses", "pain_episodes", "prescriptions"):
        src = f"read_csv('{csv_db / (t + '.csv')}', header=true, all_varchar=true)"
        cols = [r[0] for r in duckdb.sql(f"DESCRIBE SELECT * FROM {src}").fetchall()]
        sel = ", ".join(f"TRY_CAST(nullif({c}, '') AS {casts[c]}) AS {c}" if c in casts else c for c in cols)
        duckdb.sql(f"COPY (SELECT {sel} FROM {src}) TO '{pq_db / (t + '.parquet')}' (FORMAT parquet)")
    assert engine_ages(spark_url(pq_db), index_date) == ages_by_pandas(index_date)
    s = run_study(spark_url(pq_db), Params(disclosure="off"))
    c = s.cube.columns
    assert int(c["q4"][c["age"] == 65][0]) == sum(EDGE_PAIN.values())
