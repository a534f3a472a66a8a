"""Batch report generation: runs, skips unchanged runs, survives failures, resumes."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.batch import load_batch, run_batch
from analysis.errors import AnalysisError
from conftest import ROOT, patient, run_cli, write_db

pytestmark = pytest.mark.slow


def batch_file(tmp_path, data, extra_sources=None, scenarios=None):
    sources = {"good": str(data), **(extra_sources or {})}
    scen = scenarios or {"paper": {}, "elderly_80": {"elderly_age": 80}}
    lines = ["name: small", "data_sources:"]
    lines += [f"  {k}: {v}" for k, v in sources.items()]
    lines += ["scenarios:"] + [f"  {k}: {json.dumps(v)}" for k, v in scen.items()]
    lines += [
        "runs:",
        "  - notebooks: [01_cohort_profile, 03_eligibility]",
        "    scenarios: all",
        "    data_sources: all",
    ]
    f = tmp_path / "small.yaml"
    f.write_text("\n".join(lines) + "\n")
    return f


def test_a_small_batch_runs_then_skips_then_forces(tmp_path, small_db):
    b = load_batch(batch_file(tmp_path, small_db), reports=tmp_path / "reports")
    res = run_batch(b, jobs=2, progress=False)
    assert [r["status"] for r in res] == ["ok"] * 4
    for r in b.runs:
        d = b.out / r.name
        for f in (f"{r.notebook}.ipynb", f"{r.notebook}.html", "manifest.json", "run.log"):
            assert (d / f).exists(), (r.name, f)
        assert list((d / "figures").glob("*.png")) and list((d / "tables").glob("*.csv"))
        m = json.loads((d / "manifest.json").read_text())
        assert m["status"] == "ok" and m["parameters"]["data"] == str(small_db)
        assert set(m["input_fingerprint"]) >= {"patients.parquet", "dataset.json"}
        assert len(m["code_fingerprint"]["module_sha256"]) == 64 and m["packages"]["papermill"]
        assert m["resolved_parameters"]["elderly_age"] == (80 if "elderly_80" in r.name else 75)
    html = (b.out / "paper-03_eligibility" / "03_eligibility.html").read_text()
    assert "run = notebook.start" not in html  # code hidden by default
    index = (b.out / "index.html").read_text()
    for r in b.runs:
        assert r.name in index
    assert "per GP list" in index and "Synthetic data" in index

    again = run_batch(b, jobs=2, progress=False)
    assert [r["status"] for r in again] == ["up to date"] * 4
    forced = run_batch(b, jobs=2, force=True, progress=False)
    assert [r["status"] for r in forced] == ["ok"] * 4


def test_tables_and_manifests_are_identical_from_scratch_apart_from_times(tmp_path, small_db):
    f = batch_file(tmp_path, small_db, scenarios={"paper": {}})
    outs = []
    for k in ("x", "y"):
        b = load_batch(f, reports=tmp_path / k)
        run_batch(b, jobs=2, progress=False)
        outs.append(b.out)
    compared = 0
    for d in outs[0].iterdir():
        if not d.is_dir():
            continue
        for t in (d / "tables").glob("*.csv"):
            assert t.read_bytes() == (outs[1] / d.name / "tables" / t.name).read_bytes()
            compared += 1
        m1, m2 = (json.loads((o / d.name / "manifest.json").read_text()) for o in outs)
        for m in (m1, m2):
            for k in ("started", "finished", "timings"):
                m.pop(k)
        m1["parameters"]["output_dir"] = m2["parameters"]["output_dir"] = ""
        assert m1 == m2
    assert compared >= 3  # the loops ran: the batch's runs wrote tables


def test_a_failing_run_does_not_stop_the_others(tmp_path, small_db):
    bad = write_db(tmp_path / "bad", {"patients": [patient(1, sex="X")]})
    b = load_batch(
        batch_file(tmp_path, small_db, {"bad": str(bad)}, {"paper": {}}),
        reports=tmp_path / "reports",
    )
    res = {r["run"]: r for r in run_batch(b, jobs=2, progress=False)}
    assert res["good-paper-03_eligibility"]["status"] == "ok"
    failed = res["bad-paper-03_eligibility"]
    assert failed["status"] == "failed"
    # the data are not marked synthetic: the error may quote patient values, so the run's
    # files and summary say only that it is withheld; the details travel to the terminal
    assert failed["error"]["cell"] is not None and failed["error"]["error"].startswith("withheld")
    assert "AnalysisError" in failed["detail"]["error"]
    assert not (b.out / "bad-paper-03_eligibility").exists()  # nothing that looks complete
    assert (
        json.loads((b.out / "bad-paper-03_eligibility.failed" / "manifest.json").read_text())[
            "status"
        ]
        == "failed"
    )
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis",
            "batch",
            str(b.path),
            "--reports",
            str(tmp_path / "reports"),
            "--jobs",
            "2",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0
    assert "bad-paper-03_eligibility" in r.stdout and "failed" in r.stdout and "cell" in r.stdout


def test_an_interrupted_batch_resumes(tmp_path, small_db):
    b = load_batch(batch_file(tmp_path, small_db), reports=tmp_path / "reports")
    first = run_batch(b, jobs=2, only="paper-*", progress=False)
    assert [r["status"] for r in first] == ["ok", "ok"], first
    # a worker killed mid-run leaves its temporary folder behind
    (b.out / ".tmp-elderly_80-01_cohort_profile-999").mkdir()
    res = run_batch(b, jobs=2, progress=False)
    status = {r["run"]: r["status"] for r in res}
    assert status == {
        "paper-01_cohort_profile": "up to date",
        "paper-03_eligibility": "up to date",
        "elderly_80-01_cohort_profile": "ok",
        "elderly_80-03_eligibility": "ok",
    }, res
    assert not list(b.out.glob(".tmp-*"))


def test_a_misspelt_scenario_parameter_stops_the_batch_before_any_run(tmp_path, small_db):
    f = batch_file(tmp_path, small_db, scenarios={"paper": {}, "typo": {"elderly_agee": 80}})
    with pytest.raises(AnalysisError, match="did you mean 'elderly_age'"):
        load_batch(f, reports=tmp_path / "reports")
    assert not (tmp_path / "reports").exists()


def test_index_page_renders_in_headless_chromium(tmp_path, small_db):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    b = load_batch(batch_file(tmp_path, small_db), reports=tmp_path / "reports")
    run_batch(b, jobs=2, progress=False)
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = (b.out / "index.html").resolve().as_uri()
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    ).stdout
    for r in b.runs:
        assert r.name in dom
    assert dom.count("per GP list of") >= 2
    shot = tmp_path / "index.png"
    subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", "--window-size=1280,1600", url],
        capture_output=True,
        timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 10_000


def test_the_default_batch_file_is_valid():
    b = load_batch(ROOT / "batches" / "paper.yaml")
    assert "paper-03_eligibility" in [r.name for r in b.runs]
    assert Path(b.runs[0].notebook_path).exists()


def test_a_run_is_repeated_from_its_manifest_alone(tmp_path, small_db):
    b = load_batch(
        batch_file(tmp_path, small_db, scenarios={"elderly_80": {"elderly_age": 80}}),
        reports=tmp_path / "reports",
    )
    run_batch(b, jobs=2, only="*03_eligibility", progress=False)
    manifest = b.out / "elderly_80-03_eligibility" / "manifest.json"
    m = json.loads(manifest.read_text())
    assert (
        m["resolved_parameters"]["elderly_age"] == 80
        and m["resolved_parameters"]["seed"] == 20160601
    )
    assert len(m["lock_sha256"]) == 64
    ok = run_cli("rerun", manifest)
    assert ok.returncode == 0 and "byte-identical" in ok.stdout
    assert "Passed unknown parameter" not in ok.stderr  # a run that succeeded: no noise
    table = b.out / "elderly_80-03_eligibility" / "tables" / "attrition.csv"
    table.write_text(table.read_text().replace("121", "122") + "tampered\n")
    bad = run_cli("rerun", manifest)
    assert bad.returncode == 1 and "attrition.csv" in bad.stdout


def test_the_batch_name_is_its_own_and_a_password_url_is_refused_before_any_run(tmp_path):
    f = tmp_path / "pg.yaml"
    f.write_text("name: pgbatch\ndata: postgresql://u:secret@127.0.0.1:5432/x\n")
    with pytest.raises(AnalysisError, match="holds a database password") as exc:
        load_batch(f, reports=tmp_path / "reports")
    assert "secret" not in str(exc.value)
    assert not (tmp_path / "reports").exists()
    g = tmp_path / "named.yaml"
    g.write_text("name: mybatch\ndata: data/synthetic\n")
    assert load_batch(g).name == "mybatch"
