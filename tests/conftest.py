"""Shared fixtures: generated cohorts and hand-made databases in the data contract."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analysis import synth
from analysis.contract import TABLES, column_names

ROOT = Path(__file__).resolve().parents[1]


def _published() -> dict:
    """The paper's figures as printed, from data/reference/published.csv (id -> value:
    an int for counts, a float otherwise); tests take the published values from there."""
    out = {}
    with (ROOT / "data" / "reference" / "published.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            v = row["published"]
            out[row["id"]] = (
                int(v) if row["decimals"] == "0" and row["unit"] == "patients" else float(v)
            )
    return out


PUB = _published()


@pytest.fixture(scope="session")
def default_db(tmp_path_factory) -> Path:
    """The synthetic default cohort (2503 patients, default seed), built once."""
    return synth.generate(tmp_path_factory.mktemp("default") / "synthetic")


@pytest.fixture(scope="session")
def small_db(tmp_path_factory) -> Path:
    """A small generated cohort (400 patients) for fast end-to-end runs."""
    return synth.generate(tmp_path_factory.mktemp("small") / "small", patients=400, seed=7)


# the contract's columns, from its one declaration
COLUMNS = {t: column_names(t) for t in TABLES}


def run_cli(*args, cwd=None, env=None, check=False, timeout=600) -> subprocess.CompletedProcess:
    """``python -m analysis ARGS`` in a fresh process, as a user types it: the completed
    process (``returncode``, ``stdout``, ``stderr`` as text). ``env`` adds to the
    environment; ``check`` raises when the exit status is not 0."""
    return subprocess.run(
        [sys.executable, "-m", "analysis", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=check,
    )


@pytest.fixture(name="run_cli")
def run_cli_fixture():
    """:func:`run_cli` as a fixture."""
    return run_cli


def write_db(folder: Path, tables: dict[str, list[dict]], synthetic: bool = False) -> Path:
    """Write a hand-made database as CSV files (missing tables are written empty)."""
    folder.mkdir(parents=True, exist_ok=True)
    for table, cols in COLUMNS.items():
        with (folder / f"{table}.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            for row in tables.get(table, []):
                w.writerow({c: row.get(c, "") for c in cols})
    if synthetic:
        (folder / "dataset.json").write_text('{"synthetic": true}')
    return folder


def patient(pid, birth="1950-06-15", sex="F", **kw):
    return {
        "patient_id": pid,
        "practice_id": "P01",
        "sex": sex,
        "birth_date": birth,
        "registered_from": "1990-01-01",
        "registered_to": "",
        **kw,
    }


def pain(pid, date="2010-05-01", site="knee", severity=6, cause="osteoarticular"):
    return {"patient_id": pid, "date": date, "site": site, "severity": severity, "cause": cause}


def dx(pid, code, date="2005-01-01"):
    return {"patient_id": pid, "date": date, "code": code}


def rx(pid, atc, date="2012-01-01"):
    return {"patient_id": pid, "date": date, "atc_code": atc}


@pytest.fixture(autouse=True, scope="session")
def _validation_cache(tmp_path_factory):
    """Tests remember validations in their own folder, never in the user's cache."""
    import os

    os.environ["ANALYSIS_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["ANALYSIS_LOG_DIR"] = str(tmp_path_factory.mktemp("logs"))
    # a batch's kernels wait for the next batch of the session, as they do for a user's
    # (in a runtime folder of the session's own); all end with the session
    os.environ["ANALYSIS_KEEP_KERNELS"] = "60"
    os.environ["JUPYTER_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("jupyter-runtime"))
    yield
    from analysis.batch.kernels import stop_parked

    stop_parked()


def pytest_collection_modifyitems(config, items):
    """The longest tests (the whole batch on the engines) first, so that a parallel run
    (``pytest -n auto --dist loadgroup``, as ``make test`` does) starts them at once on
    different workers and runs the rest beside them."""
    items.sort(key=lambda item: item.nodeid.split("::")[0] != "tests/test_engine_batch.py")
