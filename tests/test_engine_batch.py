"""The whole default batch on every engine: DuckDB over files, a PostgreSQL server and
Spark give the same tables byte for byte (a file of its own, so that a parallel test run
starts it first and runs the rest of the suite beside it)."""

import pytest
from test_engines import PG_URL, needs_pg, needs_spark, spark_url, with_schema

from conftest import ROOT


@needs_pg
@needs_spark
@pytest.mark.slow
def test_the_whole_default_batch_gives_the_same_tables_on_every_engine(default_db, tmp_path):
    """batches/paper.yaml (every notebook, every scenario) with the default cohort as files
    (DuckDB), on a PostgreSQL server and on Spark: every table byte for byte."""
    import yaml

    from analysis.batch import load_batch, run_batch
    from analysis.load import load_into

    url = with_schema(PG_URL, "batch_default")
    load_into(default_db, url)
    paper = yaml.safe_load((ROOT / "batches" / "paper.yaml").read_text())
    paper.update(
        name="engines",
        data_sources={"duckdb": str(default_db), "postgres": url, "spark": spark_url(default_db)},
    )
    paper.pop("data")
    f = tmp_path / "engines.yaml"
    f.write_text(yaml.safe_dump(paper))
    b = load_batch(f, reports=tmp_path / "reports")
    results = run_batch(b, jobs=2, progress=False)
    assert all(r["status"] == "ok" for r in results), [r for r in results if r["status"] != "ok"]
    compared = 0
    for run in sorted(b.out.glob("duckdb-*")):
        for t in sorted((run / "tables").glob("*.csv")):
            for engine in ("postgres", "spark"):
                other = b.out / run.name.replace("duckdb-", f"{engine}-", 1) / "tables" / t.name
                assert other.read_bytes() == t.read_bytes(), (engine, run.name, t.name)
                compared += 1
    assert compared >= 60
