"""The whole default batch on every engine: DuckDB over files, a PostgreSQL server and
Spark give the same tables byte for byte. Three tests (PostgreSQL: every run; Spark: the
paper's runs, then the scenario runs), so that a parallel test run (``make test``) starts
them first on different workers and runs the rest of the suite beside them."""

import pytest
from test_engines import PG_URL, needs_pg, needs_spark, spark_url, with_schema

from conftest import ROOT

PAPER_RUNS = [{"notebooks": "all", "scenarios": ["paper"]}]


def _paper_batch():
    import yaml

    return yaml.safe_load((ROOT / "batches" / "paper.yaml").read_text())


def _same_tables_as_duckdb(default_db, tmp_path, engine, url, runs=None):
    import yaml

    from analysis.batch import load_batch, run_batch

    paper = _paper_batch()
    paper.update(name=f"engines_{engine}", data_sources={"duckdb": str(default_db), engine: url})
    paper.pop("data")
    if runs is not None:
        paper["runs"] = runs
    f = tmp_path / "engines.yaml"
    f.write_text(yaml.safe_dump(paper))
    b = load_batch(f, reports=tmp_path / "reports")
    results = run_batch(b, progress=False)  # the default: one worker on Spark local[2]
    assert all(r["status"] == "ok" for r in results), [r for r in results if r["status"] != "ok"]
    compared = 0
    for run in sorted(b.out.glob("duckdb-*")):
        for t in sorted((run / "tables").glob("*.csv")):
            other = b.out / run.name.replace("duckdb-", f"{engine}-", 1) / "tables" / t.name
            assert other.read_bytes() == t.read_bytes(), (engine, run.name, t.name)
            compared += 1
    return compared


@needs_pg
@pytest.mark.slow
def test_the_whole_default_batch_gives_the_same_tables_on_postgres(default_db, tmp_path):
    """batches/paper.yaml (every notebook, every scenario) on a PostgreSQL server."""
    from analysis.load import load_into

    url = with_schema(PG_URL, "batch_default")
    load_into(default_db, url)
    assert _same_tables_as_duckdb(default_db, tmp_path, "postgres", url) >= 30


@needs_spark
@pytest.mark.slow
@pytest.mark.parametrize("part", ["paper", "scenarios"])
def test_the_whole_default_batch_gives_the_same_tables_on_spark(default_db, tmp_path, part):
    """batches/paper.yaml on Spark: every notebook under the paper's definitions, and the
    eligibility notebook under every other scenario (two tests, run side by side)."""
    runs = (
        PAPER_RUNS
        if part == "paper"
        else [g for g in _paper_batch()["runs"] if g not in PAPER_RUNS]
    )
    assert runs
    assert _same_tables_as_duckdb(default_db, tmp_path, "spark", spark_url(default_db), runs) >= 6
