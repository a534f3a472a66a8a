"""The same figures from every engine: embedded DuckDB over files, a DuckDB file, and a
real PostgreSQL server (started by .ci/run; skipped where none is configured). Dates agree
on every engine with an independent pandas computation."""

import datetime as dt
import json
import os

import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.params import Params
from analysis.study import run_study
from conftest import ROOT, dx, pain, patient, run_cli, write_db

# module-scoped fixtures (or fixed database schemas): one worker of a parallel run
pytestmark = pytest.mark.xdist_group("test_engines")

PG_URL = os.environ.get("ANALYSIS_TEST_PG_URL")
needs_pg = pytest.mark.skipif(
    not PG_URL, reason="no PostgreSQL server (set ANALYSIS_TEST_PG_URL; .ci/run does)"
)


def with_schema(url, schema):
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def figures(data, *extra):
    r = run_cli("figures", "--data", str(data), "--json", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@needs_pg
def test_postgres_gives_the_same_figures_as_the_files(default_db):
    url = with_schema(PG_URL, "synthetic_default")
    r = run_cli("load", "--data", str(default_db), "--into", url)
    assert r.returncode == 0, r.stderr
    assert figures(url) == figures(default_db)
    assert figures(url, "--set", "elderly_age=80") == figures(default_db, "--set", "elderly_age=80")


def test_a_password_in_the_url_is_refused():
    with pytest.raises(AnalysisError, match="holds a database password"):
        run_study("postgresql://someone:secret@127.0.0.1:5432/db")


# ---- dates that agree on every engine ---------------------------------------------------
EDGE_BIRTHS = {1: "1940-02-29", 2: "1940-12-31", 3: "1941-01-01", 4: "1950-06-15"}
EDGE_PAIN = {  # patient 4's qualifying episodes: window start, the day before, the index day
    "2006-01-01": True,
    "2005-12-31": False,
    "2015-12-31": True,
    "2016-01-01": False,
}
# registration edges (default window 2006-01-01 to 2015-12-31), each with one qualifying
# episode on 2010-06-01: (birth, registered_from, registered_to)
EDGE_REGISTRATION = {
    5: ("1945-03-10", "1990-01-01", "2005-12-31"),  # left the day before the window opened: out
    6: ("1945-03-10", "1990-01-01", "2006-01-01"),  # left on the window's first day: in
    7: ("1945-03-10", "2015-12-31", ""),  # joined on the index date: in
    8: ("1945-03-10", "2016-01-01", ""),  # joined the day after: out
    9: ("2016-01-01", "2016-01-01", ""),  # born after the index date: never in
}
POPULATIONS = ("registered_in_window", "registered_on_index_date", "all_patients")


def edge_tables():
    pts = [patient(i, birth=b) for i, b in EDGE_BIRTHS.items()]
    pts += [
        patient(i, birth=b, registered_from=f, registered_to=t)
        for i, (b, f, t) in EDGE_REGISTRATION.items()
    ]
    eps = [pain(4, date=d) for d in EDGE_PAIN] + [pain(i, date="2010-06-01") for i in range(5, 9)]
    eps.append(pain(9, date="2016-06-01"))
    return {"patients": pts, "pain_episodes": eps, "diagnoses": [dx(4, "401.9", "2000-01-01")]}


def edge_db(folder):
    """The edge-case database kept in data/edge_cases (the constants above describe it;
    a test checks the files say the same)."""
    import shutil

    shutil.copytree(ROOT / "data" / "edge_cases", folder)
    return folder


def test_the_stored_edge_case_database_is_the_one_described(tmp_path):
    want = write_db(tmp_path / "want", edge_tables())
    got = edge_db(tmp_path / "got")
    for t in ("patients", "diagnoses", "pain_episodes", "prescriptions"):
        assert (got / f"{t}.csv").read_text() == (want / f"{t}.csv").read_text()


def population_by_pandas(index_date, population="registered_in_window"):
    """(ages of the population, its pain cohort size), by the definitions, in pandas."""
    idx = dt.date.fromisoformat(index_date)
    p = Params(index_date=index_date)
    t = edge_tables()
    pts = pd.DataFrame(t["patients"])
    for c in ("birth_date", "registered_from", "registered_to"):
        pts[c] = pd.to_datetime(pts[c].replace("", None)).dt.date
    keep = pts["birth_date"] <= idx
    if population == "registered_in_window":
        keep &= (pts["registered_from"] <= idx) & (
            pts["registered_to"].isna() | (pts["registered_to"] >= p.window_start)
        )
    elif population == "registered_on_index_date":
        keep &= (pts["registered_from"] <= idx) & (
            pts["registered_to"].isna() | (pts["registered_to"] >= idx)
        )
    pop = pts[keep]
    ages = sorted(
        idx.year - b.year - ((idx.month, idx.day) < (b.month, b.day)) for b in pop["birth_date"]
    )
    eps = pd.DataFrame(t["pain_episodes"])
    eps["date"] = pd.to_datetime(eps["date"]).dt.date
    q = eps[(eps["date"] >= p.window_start) & (eps["date"] <= idx)]
    return ages, int(pop["patient_id"].isin(q["patient_id"]).sum())


def ages_by_pandas(index_date):
    return population_by_pandas(index_date, "all_patients")[0]


INDEX_DATES = ["2015-02-28", "2015-03-01", "2016-02-29", "2015-12-31", "2016-01-01"]
# Spark (a JVM, slow to start): the leap day and the paper's index date (with the whole
# figures summary); DuckDB and PostgreSQL take every date
SPARK_INDEX_DATES = ["2016-02-29", "2015-12-31"]


def engine_ages(data, index_date, population="all_patients"):
    return engine_population(data, index_date, population)[0]


def engine_population(data, index_date, population="registered_in_window"):
    s = run_study(data, Params(index_date=index_date, population=population, disclosure="off"))
    c = s.cube.columns
    f = s.cube.flag_arrays(s.params)
    ages = sorted(int(a) for a, n in zip(c["age"], c["n"], strict=True) for _ in range(int(n)))
    return ages, s.cube.count(f["pain"])


@pytest.mark.parametrize("population", POPULATIONS)
@pytest.mark.parametrize("index_date", ["2015-12-31", "2016-01-01", "2015-02-28"])
def test_the_population_on_duckdb_equals_pandas(tmp_path, index_date, population):
    got = engine_population(edge_db(tmp_path / "edge"), index_date, population)
    assert got == population_by_pandas(index_date, population)


def test_registration_edges_by_hand(tmp_path):
    """On the default dates: in are 1-4, 6 (left on the window's first day) and 7 (joined
    on the index date); out are 5 (left the day before), 8 (joined the day after) and 9
    (born after the index date); the pain cohort is 4, 6 and 7."""
    s = run_study(edge_db(tmp_path / "edge"), Params(disclosure="off"))
    assert s.cube.n_total == 6 and s.cube.population == {
        "database": 9,
        "born_after_index": 1,
        "not_registered": 2,
    }
    assert s.cube.count(s.cube.flag_arrays(s.params)["pain"]) == 3


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
    for population in POPULATIONS:
        assert engine_population(url, index_date, population) == population_by_pandas(
            index_date, population
        )
    s = run_study(url, Params(disclosure="off"))
    c = s.cube.columns
    assert int(c["q4"][c["age"] == 65][0]) == sum(EDGE_PAIN.values())
    if index_date == "2015-12-31":  # the whole figures summary, byte for byte
        assert figures(url, "--set", "disclosure=off") == figures(
            edge_db(tmp_path / "edge2"), "--set", "disclosure=off"
        )


def test_pandas_reference_by_hand():
    # 29 Feb 1940: not yet 75; the four born 1945-03-10 are 69; patient 9 not yet born
    assert ages_by_pandas("2015-02-28") == [64, 69, 69, 69, 69, 74, 74, 74]
    assert ages_by_pandas("2016-02-29") == sorted([76, 75, 75, 65, 70, 70, 70, 70, 0])
    assert population_by_pandas("2015-12-31") == ([65, 70, 70, 74, 75, 75], 3)  # 1 Jan 1941: 74
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
@pytest.mark.parametrize("index_date", SPARK_INDEX_DATES)
def test_age_in_completed_years_on_spark_equals_pandas(tmp_path, index_date):
    csv_db = edge_db(tmp_path / "edge")
    pq_db = tmp_path / "edge_parquet"
    pq_db.mkdir()
    import duckdb

    casts = {
        "patient_id": "BIGINT",
        "date": "DATE",
        "birth_date": "DATE",
        "registered_from": "DATE",
        "registered_to": "DATE",
        "severity": "INTEGER",
    }
    for t in ("patients", "diagnoses", "pain_episodes", "prescriptions"):
        src = f"read_csv('{csv_db / (t + '.csv')}', header=true, all_varchar=true)"
        cols = [r[0] for r in duckdb.sql(f"DESCRIBE SELECT * FROM {src}").fetchall()]
        sel = ", ".join(
            f"TRY_CAST(nullif({c}, '') AS {casts[c]}) AS {c}" if c in casts else c for c in cols
        )
        duckdb.sql(
            f"COPY (SELECT {sel} FROM {src}) TO '{pq_db / (t + '.parquet')}' (FORMAT parquet)"
        )
    (pq_db / "dataset.json").write_text(
        (csv_db / "dataset.json").read_text()
    )  # the same database: synthetic
    for population in POPULATIONS:  # all_patients: every patient's age
        got = engine_population(spark_url(pq_db), index_date, population)
        assert got == population_by_pandas(index_date, population)
    s = run_study(spark_url(pq_db), Params(disclosure="off"))
    c = s.cube.columns
    assert int(c["q4"][c["age"] == 65][0]) == sum(EDGE_PAIN.values())
    if index_date == "2015-12-31":  # the whole figures summary, byte for byte
        assert figures(spark_url(pq_db), "--set", "disclosure=off") == figures(
            csv_db, "--set", "disclosure=off"
        )


def test_whether_a_spark_folder_is_synthetic_needs_no_jvm(tmp_path, monkeypatch):
    """A batch asks each run's source whether it is synthetic: for a local Spark folder its
    own files answer (as a Spark session would read them), without starting one."""
    import shutil

    from analysis.data import database
    from analysis.data.database import is_synthetic
    from conftest import ROOT

    def no_spark(*a, **k):
        raise AssertionError("a Spark session was started")

    monkeypatch.setattr(database, "SparkConnection", no_spark)
    folder = tmp_path / "synthetic"
    shutil.copytree(ROOT / "data" / "synthetic", folder)
    assert is_synthetic(f"spark://local[1]?path={folder}")
    (folder / "dataset.json").unlink()  # Spark reads dataset.json only: not marked synthetic
    assert not is_synthetic(f"spark://local[1]?path={folder}")
    (folder / "dataset.json").write_text('{"synthetic": true}')
    (folder / "diagnoses.parquet").unlink()  # a folder Spark cannot open: not synthetic
    assert not is_synthetic(f"spark://local[1]?path={folder}")


@needs_spark
@pytest.mark.slow
def test_spark_refuses_bad_files_and_does_not_check_checked_files_again(
    tmp_path, small_db, monkeypatch
):
    """A local Spark folder is validated as DuckDB validates it (a value out of range is
    refused, naming it); files whose exact content passed the checks (by either engine)
    are not checked again."""
    import shutil

    import pyarrow.parquet as pq

    from analysis.data import database, open_database

    bad = tmp_path / "bad"
    shutil.copytree(small_db, bad)
    episodes = pq.read_table(bad / "pain_episodes.parquet").to_pandas()
    episodes.loc[0, "severity"] = 11  # the scale is 0-10
    episodes.to_parquet(bad / "pain_episodes.parquet", index=False)
    with pytest.raises(AnalysisError, match="severity"):
        open_database(spark_url(bad))

    checked, validate = [], database.validate_database

    def counted(db):
        checked.append(db)
        return validate(db)

    monkeypatch.setattr(database, "validate_database", counted)
    good = tmp_path / "good"
    shutil.copytree(small_db, good)
    open_database(good).close()  # DuckDB checks the files (they are new to the cache)
    assert len(checked) == 1
    open_database(spark_url(good)).close()  # the same bytes: not checked again
    assert len(checked) == 1
    episodes.to_parquet(good / "pain_episodes.parquet", index=False)  # changed: checked
    with pytest.raises(AnalysisError, match="severity"):
        open_database(spark_url(good))
    assert len(checked) == 2
