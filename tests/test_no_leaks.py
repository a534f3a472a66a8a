"""The release test: a whole batch on small databases not marked synthetic, read as an
output checker would. Every notebook runs; two scenarios differ by one threshold; two
data sources differ by one planted patient. Marker values are planted in the data and
the environment and every output file is scanned for them; then every count, share,
interval and estimate of every table is checked to be a function of released counts
only (nothing finer can be recovered), within and across runs."""

import json
import shutil

import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from analysis.batch import load_batch, run_batch
from analysis.outputs.registry import declared

# module-scoped fixtures (or fixed database schemas): one worker of a parallel run


pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_no_leaks")]

MARK_ID = 9876543210
MARK_BIRTH = "1931-07-17"
MARK_DATE = "2011-11-11"
MARK_CODE = "V99.77"
MARK_SECRET = "S3cret-Marker-Password!"


def _as_real(small_db, folder, extra_patient: bool):
    """The small cohort as CSV without the synthetic mark, with planted markers; with
    ``extra_patient`` one more patient: elderly, recurrent pain, a risk condition."""
    folder.mkdir(parents=True)
    tables = {
        t: pd.read_parquet(small_db / f"{t}.parquet")
        for t in ("patients", "diagnoses", "pain_episodes", "prescriptions")
    }
    pts = tables["patients"]
    old = pts.loc[0, "patient_id"]
    pts.loc[0, "patient_id"] = MARK_ID
    pts.loc[0, "birth_date"] = pd.Timestamp(MARK_BIRTH).date()
    for t in ("diagnoses", "pain_episodes", "prescriptions"):
        df = tables[t]
        df.loc[df["patient_id"] == old, "patient_id"] = MARK_ID
        df.loc[df["patient_id"] == MARK_ID, "date"] = pd.Timestamp(MARK_DATE).date()
    dx = tables["diagnoses"]
    tables["diagnoses"] = pd.concat(
        [
            dx,
            pd.DataFrame(
                {
                    "patient_id": [MARK_ID],
                    "date": [pd.Timestamp(MARK_DATE).date()],
                    "code": [MARK_CODE],
                }
            ),
        ],
        ignore_index=True,
    )
    if extra_patient:
        new = pts.iloc[[1]].copy()
        new["patient_id"], new["birth_date"], new["sex"] = (
            864209753,
            pd.Timestamp("1930-02-02").date(),
            "F",
        )
        tables["patients"] = pd.concat([pts, new], ignore_index=True)
        ep = tables["pain_episodes"].iloc[[0, 0]].copy()
        ep["patient_id"], ep["site"], ep["severity"], ep["cause"] = (
            864209753,
            "knee",
            7,
            "osteoarticular",
        )
        ep["date"] = [pd.Timestamp("2010-01-05").date(), pd.Timestamp("2013-01-05").date()]
        tables["pain_episodes"] = pd.concat([tables["pain_episodes"], ep], ignore_index=True)
        tables["diagnoses"] = pd.concat(
            [
                tables["diagnoses"],
                pd.DataFrame(
                    {
                        "patient_id": [864209753],
                        "date": [pd.Timestamp("2008-01-01").date()],
                        "code": ["428.0"],
                    }
                ),
            ],
            ignore_index=True,
        )
    for t, df in tables.items():
        df.to_csv(folder / f"{t}.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def released(small_db, tmp_path_factory):
    """The batch's output folder (run once for the module)."""
    base = tmp_path_factory.mktemp("release")
    a = _as_real(small_db, base / "practice_a", extra_patient=False)
    b = _as_real(small_db, base / "practice_b", extra_patient=True)
    f = base / "release.yaml"
    f.write_text(
        json.dumps(
            {
                "name": "release",
                "data_sources": {"a": str(a), "b": str(b)},
                "scenarios": {"paper": {}, "elderly_76": {"elderly_age": 76}},
                "runs": [
                    {"notebooks": "all", "scenarios": ["paper"], "data_sources": "all"},
                    {
                        "notebooks": ["02_pain_and_risk", "03_eligibility"],
                        "scenarios": ["elderly_76"],
                        "data_sources": "all",
                    },
                ],
            }
        )
    )
    import os

    saved = os.environ.get("PGPASSWORD")
    os.environ["PGPASSWORD"] = MARK_SECRET
    try:
        b_ = load_batch(f, reports=base / "reports")
        results = run_batch(b_, jobs=2, progress=False)
    finally:  # the test server's own password (if any) back, for the engine tests
        if saved is None:
            del os.environ["PGPASSWORD"]
        else:
            os.environ["PGPASSWORD"] = saved
    assert all(r["status"] == "ok" for r in results), results
    yield b_.out
    shutil.rmtree(b_.out, ignore_errors=True)


def _tables(out):
    for run in sorted(p for p in out.iterdir() if p.is_dir()):
        for t in sorted((run / "tables").glob("*.csv")):
            yield run.name, t.stem, pd.read_csv(t)


def _contents(p):
    """A file's bytes; for a zip container (.docx, .xlsx) every member's bytes too (its
    text is compressed, so a scan of the raw file would see nothing)."""
    import zipfile

    data = p.read_bytes()
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as z:
            data += b"".join(z.read(n) for n in z.namelist())
    return data


def test_no_marker_and_no_secret_in_any_output(released):
    files = [p for p in released.rglob("*") if p.is_file()]
    assert len(files) > 100
    assert any(p.suffix == ".docx" for p in files) and any(p.suffix == ".xlsx" for p in files)
    assert (released / "methods.md").exists() and (released / "methods.html").exists()
    for p in files:
        data = _contents(p)
        for marker in (str(MARK_ID), MARK_BIRTH, MARK_DATE, MARK_CODE, MARK_SECRET, "864209753"):
            assert marker.encode() not in data, (p, marker)
    index = (released / "index.html").read_text()
    assert "User data" in index and "Synthetic data" not in index


def test_every_table_is_declared_and_protected(released):
    specs = declared()
    for run, name, df in _tables(released):
        assert name in specs, (run, name)
        spec = specs[name]
        if spec.counts:
            assert set(df["disclosure"]) == {"opensafely"}, (run, name)


def test_every_count_is_released_rounded_or_withheld(released):
    specs = declared()
    for run, name, df in _tables(released):
        for col in specs[name].counts:
            vals = df[col].dropna()
            assert (vals % 5 == 0).all(), (run, name, col, vals.tolist())
            assert ((vals == 0) | (vals >= 10)).all() or col in ("records",), (
                run,
                name,
                col,
                vals.tolist(),
            )


def test_no_share_or_interval_tells_more_than_the_released_counts(released):
    """Every percentage is a released count over a released total; every proportion
    interval is the Wilson interval of those released counts (statsmodels)."""
    specs = declared()
    checked = 0
    for run, name, df in _tables(released):
        spec = specs[name]
        for pct, (num, den) in spec.pct.items():
            for _, r in df.iterrows():
                if r[pct] != r[pct]:
                    continue
                if den in df.columns:
                    total = r[den]
                else:  # a partition's (or the table's) total: implied, must be a released count
                    total = 100 * r[num] / r[pct] if r[pct] else None
                    if total is None:
                        continue
                    assert abs(total - round(total)) < 1e-6 and round(total) % 5 == 0, (
                        run,
                        name,
                        total,
                    )
                assert r[pct] == pytest.approx(100 * r[num] / total), (run, name, pct)
                checked += 1
        for lo, hi, num, den in spec.ci:
            for _, r in df.dropna(subset=[lo]).iterrows():
                ref = proportion_confint(int(r[num]), int(r[den]), alpha=0.05, method="wilson")
                assert (r[lo], r[hi]) == pytest.approx((100 * ref[0], 100 * ref[1]), abs=1e-8), (
                    run,
                    name,
                )
                checked += 1
    assert checked > 100


def test_estimates_are_released_counts_times_the_assumption(released):
    checked, targets = set(), []
    for _run, name, df in _tables(released):
        checked.add(name)
        if name == "eligibility_estimate":
            r = df.iloc[0]
            assert r["target_n"] % 5 == 0 and r["population_n"] % 5 == 0
            assert r["candidates"] == pytest.approx(r["target_n"] * r["benefit_fraction"])
            assert r["per_gp_list"] == pytest.approx(
                r["candidates"] / r["population_n"] * r["gp_list_size"]
            )
        if name == "attrition":
            a = df.set_index("step")["n"]
            targets.append(a["target"])
            if a.notna()["candidates"]:
                assert a["candidates"] == pytest.approx(a["target"] * 0.5)
        if name == "table_one":
            assert ((df["pain_mean"].dropna() * 10) % 1 == 0).all()
            assert ((df["smd"].dropna() * 100).round(9) % 1 == 0).all()
        if name == "risk_condition_odds_ratios":
            assert ((df["odds_ratio"].dropna() * 100).round(9) % 1 == 0).all()
    # the loop saw every kind of table it checks; the estimate is written only where the
    # target subgroup is released (in these small practices it is withheld everywhere)
    assert {"attrition", "table_one", "risk_condition_odds_ratios"} <= checked
    assert "eligibility_estimate" in checked or (targets and all(pd.isna(t) for t in targets))


def test_runs_agree_and_one_patient_more_moves_counts_by_rounding_steps_only(released):
    pop = {}
    for run, name, df in _tables(released):
        if name == "sex":
            pop.setdefault(run.split("-")[0], set()).add(float(df["denominator"].iloc[0]))
        if name == "attrition":
            pop.setdefault(run.split("-")[0], set()).add(
                float(df.set_index("step").at["all_patients", "n"])
            )
    assert all(len(v) == 1 for v in pop.values()), pop  # one population count per source
    a = {
        (run.split("-", 1)[1], name): df
        for run, name, df in _tables(released)
        if run.startswith("a-")
    }
    b = {
        (run.split("-", 1)[1], name): df
        for run, name, df in _tables(released)
        if run.startswith("b-")
    }
    specs = declared()
    for key in a.keys() & b.keys():
        for col in specs[key[1]].counts:
            if len(a[key]) == len(b[key]):
                d = (a[key][col] - b[key][col]).dropna()
                assert (d % 5 == 0).all(), (key, col)


def test_release_sheet_lists_files_and_the_pairs_to_compare(released):
    sheet = (released / "release.md").read_text()
    assert "opensafely rule" in sheet and "a-paper-03_eligibility/tables/attrition.csv" in sheet
    assert "**NO**" not in sheet  # every file is one the batch knows
    assert (
        "`a-elderly_76-03_eligibility` and `a-paper-03_eligibility`: differ in elderly_age only"
        in sheet
    )
    assert "`a-paper-03_eligibility` and `b-paper-03_eligibility`: same parameters" in sheet


def test_real_data_with_disclosure_off_is_stamped_not_for_release(small_db, tmp_path):
    real = _as_real(small_db, tmp_path / "real", extra_patient=False)
    f = tmp_path / "check.yaml"
    f.write_text(
        f"name: check\ndata: {real}\nscenarios: {{paper: {{}}, unrounded: {{disclosure: off}}, "
        "weak: {disclosure_threshold: 1, disclosure_rounding: 1}}\n"
        "runs:\n  - notebooks: [03_eligibility]\n    scenarios: all\n"
    )
    b = load_batch(f, reports=tmp_path / "reports")
    names = [r.name for r in b.runs]
    assert names == [
        "paper-03_eligibility",
        "unrounded-03_eligibility",
        "weak-03_eligibility",
    ]
    assert [r.release for r in b.runs] == ["aggregates under disclosure control"] + [
        "NOT FOR RELEASE"
    ] * 2
    assert all(r["status"] == "ok" for r in run_batch(b, jobs=2, progress=False))
    assert (b.out / "index.html").read_text().count("release: NOT FOR RELEASE") == 2
    for n in names[1:]:
        assert "NOT FOR RELEASE" in (b.out / n / "03_eligibility.html").read_text()
        assert json.loads((b.out / n / "manifest.json").read_text())["release"] == "NOT FOR RELEASE"
    assert "NOT FOR RELEASE" not in (b.out / names[0] / "03_eligibility.html").read_text()
    sheet = (b.out / "release.md").read_text()
    assert "opensafely rule" in sheet and "NOT FOR RELEASE" in sheet


def test_outputs_of_real_data_stay_under_reports(small_db, tmp_path):
    from analysis import paths
    from analysis.errors import AnalysisError

    real = _as_real(small_db, tmp_path / "real", extra_patient=False)
    f = tmp_path / "x.yaml"
    f.write_text(f"name: x\ndata: {real}\n")
    b = load_batch(f, reports=paths.ROOT / "notebooks" / "oops")
    with pytest.raises(AnalysisError, match="must go under"):
        run_batch(b, jobs=1, progress=False)
    assert not (paths.ROOT / "notebooks" / "oops").exists()


def test_a_batch_never_writes_into_a_folder_made_from_other_data(small_db, tmp_path):
    from analysis.errors import AnalysisError

    real = _as_real(small_db, tmp_path / "real", extra_patient=False)
    f = tmp_path / "paper.yaml"
    f.write_text(f"name: paper\ndata: {small_db}\nruns:\n  - notebooks: [03_eligibility]\n")
    first = load_batch(f, reports=tmp_path / "reports")
    run_batch(first, jobs=1, progress=False)
    before = (first.out / "default-03_eligibility" / "tables" / "attrition.csv").read_bytes()
    f.write_text(f"name: paper\ndata: {real}\nruns:\n  - notebooks: [03_eligibility]\n")
    with pytest.raises(AnalysisError, match="holds runs made from other data.*own `name:`"):
        run_batch(load_batch(f, reports=tmp_path / "reports"), jobs=1, progress=False)
    assert (
        first.out / "default-03_eligibility" / "tables" / "attrition.csv"
    ).read_bytes() == before


def test_a_failed_run_on_real_data_keeps_only_how_to_see_why(tmp_path, capfd):
    from conftest import patient, write_db

    bad = write_db(tmp_path / "bad", {"patients": [patient(987654321, birth="2099-01-01")]})
    f = tmp_path / "bad.yaml"
    f.write_text(f"name: bad\ndata: {bad}\nruns:\n  - notebooks: [01_cohort_profile]\n")
    b = load_batch(f, reports=tmp_path / "reports")
    res = run_batch(b, jobs=1, progress=False)
    assert res[0]["status"] == "failed"
    folder = b.out / "default-01_cohort_profile.failed"
    assert sorted(p.name for p in folder.iterdir()) == ["README.txt", "manifest.json"]
    for p in b.out.rglob("*"):
        if p.is_file():
            assert b"987654321" not in p.read_bytes() and b"2099-01-01" not in p.read_bytes(), p
    assert "python -m analysis figures --data" in (folder / "README.txt").read_text()
    assert "2099-01-01" in capfd.readouterr().err  # the details: on the terminal


def _descendants(pid: int) -> set[int]:
    import subprocess

    rows = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout.split(
        "\n"
    )
    children: dict[int, list[int]] = {}
    for row in rows:
        if row.strip():
            p, pp = map(int, row.split())
            children.setdefault(pp, []).append(p)
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


def test_killing_the_batch_stops_its_workers_and_kernels(small_db, tmp_path):
    """`kill -9` of the batch's own process: its workers (and their kernels) stop with it
    instead of running on over real data."""
    import os
    import signal
    import subprocess
    import sys
    import time

    real = _as_real(small_db, tmp_path / "real", extra_patient=False)
    f = tmp_path / "k.yaml"
    f.write_text(
        f"name: k\ndata: {real}\nscenarios: "
        f"{{a: {{}}, b: {{elderly_age: 80}}, c: {{elderly_age: 70}}}}\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "analysis",
            "batch",
            str(f),
            "--reports",
            str(tmp_path / "r"),
            "--jobs",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # no kernel parked by an earlier batch to claim: its workers start their own, which
        # may be parked (they watch their worker themselves, not only as ipykernel does)
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")},
    )
    seen: set[int] = set()
    deadline = time.time() + 60
    while time.time() < deadline and len(seen) < 4:  # two workers and at least two kernels
        seen |= _descendants(proc.pid)
        time.sleep(0.3)
    assert len(seen) >= 3, "the batch did not start its workers"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20
    alive = seen
    while time.time() < deadline:
        alive = {
            p
            for p in seen
            if os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z"
        }
        if not alive:
            break
        time.sleep(0.5)
    for p in alive:  # do not leave them behind even when the test fails
        os.kill(p, signal.SIGKILL)
    assert not alive, f"{len(alive)} worker or kernel process(es) outlived the batch"


@pytest.mark.parametrize("rule", ["ohdsi", "opensafely"])
def test_a_population_of_one_is_said_to_be_withheld_not_counted(tmp_path, rule):
    """One patient (aged 85, recurrent pain, a risk drug): the labels of every output
    ("user data, n = ...") and the results in words say "withheld", not 1 (nor 0, its
    rounding: a zero is a count too)."""

    from analysis.methods import results_words
    from analysis.params import Params
    from analysis.study import run_study
    from conftest import pain, patient, run_cli, rx, write_db

    db = write_db(
        tmp_path / "one",
        {
            "patients": [patient(1, birth="1930-01-01")],
            "pain_episodes": [pain(1, "2010-01-01"), pain(1, "2012-01-01")],
            "prescriptions": [rx(1, "B01AC06")],
        },
    )
    study = run_study(db, Params(disclosure=rule))
    assert study.n_released is None
    assert study.data_label.startswith("user data, n = withheld (")
    assert results_words(study).startswith("The population is too small to be released (")
    for command in ("figures", "practices"):
        out = run_cli(command, "--data", str(db), "--disclosure", rule, check=True).stdout
        assert "n = withheld" in out and "n = 1 " not in out and "n = 0 " not in out
