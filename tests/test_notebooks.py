"""The notebooks: stored clean, parameterized with the shared defaults, and run top to
bottom under papermill on a small and on the default cohort."""

import json
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm
import pytest

from analysis import cohort, statistics
from analysis.batch.kernels import worker_kernel
from analysis.params import Params
from analysis.study import run_study
from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NAMES = [p.stem for p in NOTEBOOKS]


def parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1
    return cells[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_stored_without_outputs_and_with_a_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None
    assert nb.cells[0].cell_type == "markdown" and "**Run it" in nb.cells[0].source
    assert nb.metadata["kernelspec"]["name"] == "analysis"


def _cells(nb):
    return [
        (c.cell_type, c.source.strip(), tuple(c.get("metadata", {}).get("tags", [])))
        for c in nb.cells
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_each_notebook_and_its_py_source_hold_the_same_cells(path):
    """The .py (jupytext percent format) is the reviewed source; the stored .ipynb must say
    the same, cell for cell (run `make notebooks` after editing either)."""
    import jupytext

    source = path.with_suffix(".py")
    assert source.exists(), f"{source} missing: pair it with `make notebooks`"
    assert _cells(jupytext.read(source)) == _cells(nbformat.read(path, as_version=4)), (
        f"{path.name} and {source.name} differ: run `make notebooks` (jupytext --sync)"
    )


def test_an_edit_of_either_side_reaches_the_other_and_a_divergence_fails(tmp_path):
    """Edit the .py, sync: the .ipynb follows; edit the .ipynb, sync: the .py follows; a
    pair edited on one side only fails the comparison above."""
    import os
    import shutil
    import subprocess
    import sys
    import time

    import jupytext

    for f in ("03_eligibility.ipynb", "03_eligibility.py", "jupytext.toml"):
        shutil.copy(ROOT / "notebooks" / f, tmp_path / f)
    py, ipynb = tmp_path / "03_eligibility.py", tmp_path / "03_eligibility.ipynb"

    def sync(path):
        subprocess.run(
            [sys.executable, "-m", "jupytext", "--sync", str(path)],
            check=True,
            capture_output=True,
        )

    assert _cells(jupytext.read(py)) == _cells(nbformat.read(ipynb, as_version=4))
    py.write_text(py.read_text().replace("# ## Attrition\n", "# ## Attrition, step by step\n"))
    later = max(time.time(), ipynb.stat().st_mtime) + 2
    os.utime(py, (later, later))
    assert _cells(jupytext.read(py)) != _cells(nbformat.read(ipynb, as_version=4))  # diverged
    sync(py)
    assert "## Attrition, step by step" in ipynb.read_text()
    assert _cells(jupytext.read(py)) == _cells(nbformat.read(ipynb, as_version=4))

    nb = nbformat.read(ipynb, as_version=4)
    nb.cells[0].source += "\n\nEdited in JupyterLab."
    nbformat.write(nb, ipynb)
    # newer than anything the sync above wrote, however long it took (under load it took
    # over 2 s, and the .py it rewrote then looked newer than this edit)
    later = max(time.time(), py.stat().st_mtime, ipynb.stat().st_mtime) + 2
    os.utime(ipynb, (later, later))
    sync(ipynb)
    assert "# Edited in JupyterLab." in py.read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_each_notebook_reads_as_a_document(path):
    """At least 150 words of text, a paragraph before every result, a methods cell and the
    disclosure summary at the end."""
    nb = nbformat.read(path, as_version=4)
    words = sum(len(c.source.split()) for c in nb.cells if c.cell_type == "markdown")
    assert words >= 150, (path.name, words)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    for i in code[2:]:  # after the parameters and the set-up cell
        assert nb.cells[i - 1].cell_type == "markdown", (path.name, nb.cells[i].source[:60])
    sources = [c.source for c in nb.cells]
    assert "run.methods()" in sources and sources[-1] == "run.finish()"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_parameters_cells_are_short_and_take_a_parameters_file(path):
    ns = {}
    exec(parameters_cell(nbformat.read(path, as_version=4)).source, ns)
    names = [k for k in ns if not k.startswith("__")]
    assert "params_file" in names and "data" in names
    assert len(names) <= 20, (path.name, len(names))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_parameter_defaults_are_the_shared_parameter_set(path):
    ns = {}
    exec(parameters_cell(nbformat.read(path, as_version=4)).source, ns)
    defaults = Params().to_dict()
    for k, v in ns.items():
        if k in defaults:
            assert v == defaults[k], k


def execute(name, data, out, **params):
    """The notebook under papermill on this test process's warm kernel, as a batch worker
    runs it (a kernel kept with its imports done, reset before each run: the state one
    test's notebook leaves is never seen by the next's, tests/test_warm_kernels.py)."""
    out.mkdir(parents=True, exist_ok=True)
    return worker_kernel().execute(
        ROOT / "notebooks" / f"{name}.ipynb",
        out / f"{name}.ipynb",
        {"data": str(data), "output_dir": str(out), **params},
    )


def stderr_text(nb):
    return "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("name") == "stderr"
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("cohort_name", ["small_db", "default_db"])
def test_notebook_runs_under_papermill(name, cohort_name, request, tmp_path):
    data = request.getfixturevalue(cohort_name)
    nb = execute(name, data, tmp_path)
    assert "Warning" not in stderr_text(nb)
    assert list((tmp_path / "tables").glob("*.csv"))
    # 07 draws nothing on one practice (both cohorts here): nothing between practices
    if name not in ("05_reproduction", "06_data_quality", "07_practices"):
        pngs = list((tmp_path / "figures").glob("*.png"))
        assert pngs and len(list((tmp_path / "figures").glob("*.svg"))) == len(pngs)
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "synthetic default data" in text  # the data and its n are said in the outputs


@pytest.mark.slow
def test_tables_match_the_module_and_the_flow_matches_the_attrition(default_db, tmp_path):
    execute("03_eligibility", default_db, tmp_path)
    study = run_study(default_db)
    table = pd.read_csv(tmp_path / "tables" / "attrition.csv")
    expected = cohort.attrition_table(study.cube)
    pd.testing.assert_series_equal(table["n"].astype(float), expected["n"].astype(float))
    # every patient of the files, who the population leaves out and why, then the paper's counts
    assert table["step"].tolist()[:4] == [
        "database",
        "excluded_born_after_index",
        "excluded_not_registered",
        "all_patients",
    ]
    assert table["n"].tolist()[:7] == [2578, 10, 65, 2503, 827, 376, 121]
    est = pd.read_csv(tmp_path / "tables" / "eligibility_estimate.csv").iloc[0]
    assert est["candidates"] == pytest.approx(study.eligibility().candidates)


@pytest.mark.slow
def test_outputs_are_deterministic(small_db, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    execute("02_pain_and_risk", small_db, a)
    execute("02_pain_and_risk", small_db, b)
    files = sorted((a / "tables").glob("*.csv")) + sorted((a / "figures").glob("*.*"))
    assert len(files) >= 5  # the comparison below ran (02 writes 5 tables and 4 figures)
    for f in files:
        assert f.read_bytes() == (b / f.relative_to(a)).read_bytes(), f.name


@pytest.mark.slow
def test_table_one_in_the_notebook_matches_the_module(default_db, tmp_path):
    execute("01_cohort_profile", default_db, tmp_path)
    got = pd.read_csv(tmp_path / "tables" / "table_one.csv")
    want = statistics.table_one(run_study(default_db, drug_counts=True).cube)
    assert got["pain_n"].fillna(-1).tolist() == want["pain_n"].fillna(-1).tolist()


@pytest.mark.slow
def test_a_misspelt_injected_parameter_is_refused(small_db, tmp_path):
    with pytest.raises(pm.PapermillExecutionError) as e:
        execute("03_eligibility", small_db, tmp_path, elderly_agee=80)
    assert "elderly_agee" in str(e.value) and "elderly_age" in str(e.value)
    assert not (tmp_path / "tables").exists()


@pytest.mark.slow
def test_parameters_from_a_yaml_file(small_db, tmp_path):
    """papermill -f params.yaml: the notebook uses the file's values."""
    import subprocess
    import sys

    f = tmp_path / "params.yaml"
    f.write_text(f"data: {small_db}\noutput_dir: {tmp_path / 'out'}\nelderly_age: 80\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(ROOT / "notebooks" / "03_eligibility.ipynb"),
            str(tmp_path / "o.ipynb"),
            "-f",
            str(f),
            "-k",
            "analysis",
            "--cwd",
            str(ROOT / "notebooks"),
        ],
        check=True,
        capture_output=True,
    )
    a = pd.read_csv(tmp_path / "out" / "tables" / "attrition.csv")
    assert "aged >= 80" in a.loc[a["step"] == "target", "definition"].iloc[0]
    assert Path(tmp_path / "out" / "figures" / "flow_diagram.svg").exists()


@pytest.mark.slow
@pytest.mark.parametrize("synthetic", [True, False])
def test_notebook_02_runs_to_the_end_on_a_small_sparse_practice(tmp_path, synthetic):
    """The youngest band has pain but no risk condition (an empty cell): the odds ratios
    come from Firth's penalized likelihood and the forest plot is drawn."""
    from conftest import dx, pain, patient, write_db

    pts = [
        patient(i, birth="1990-01-01" if i <= 10 else "1940-01-01", sex="F" if i % 2 else "M")
        for i in range(1, 41)
    ]
    eps = [pain(i) for i in range(1, 41)]
    dxs = [dx(i, "401.9") for i in range(11, 31)]
    db = write_db(
        tmp_path / "sparse",
        {"patients": pts, "pain_episodes": eps, "diagnoses": dxs},
        synthetic=synthetic,
    )
    execute("02_pain_and_risk", db, tmp_path / "out", age_band_edges=[45])
    ors = pd.read_csv(tmp_path / "out" / "tables" / "risk_condition_odds_ratios.csv")
    if synthetic:
        assert ors["method"].str.startswith("Firth").all() and (ors["odds_ratio"] < 1e6).all()
    drawn = (tmp_path / "out" / "figures" / "risk_condition_odds_ratios.png").exists()
    if ors["odds_ratio"].isna().all():  # every ratio withheld (real data): not drawn, said
        assert not synthetic and not drawn
        said = json.loads((tmp_path / "out" / "disclosure.json").read_text())["figures"]
        assert said["risk_condition_odds_ratios"].startswith("not drawn")
    else:
        assert drawn


def test_a_parameters_file_and_any_valid_parameter_reach_every_notebook(small_db, tmp_path):
    """params_file brings any parameter; papermill -p brings one the cell does not list
    (gp_list_size is not in notebook 01's cell); a value in the cell equal to the default does
    not undo the file."""
    from analysis.notebook import notebook_params

    f = tmp_path / "more.yaml"
    f.write_text("elderly_age: 80\nrisk_drugs: [risk_drug_ssri]\n")
    p = notebook_params({"params_file": str(f), "elderly_age": 75, "gp_list_size": 900}, "t")
    assert (p.elderly_age, p.risk_drugs, p.gp_list_size) == (80, ("risk_drug_ssri",), 900)
    p = notebook_params({"params_file": str(f), "elderly_age": 70}, "t")
    assert p.elderly_age == 70  # a changed value in the cell (or -p) takes precedence
    out = tmp_path / "o"
    execute("01_cohort_profile", small_db, out, params_file=str(f), gp_list_size=900)
    t = pd.read_csv(out / "tables" / "age_summary.csv")
    assert len(t)
    (tmp_path / "bad.yaml").write_text("elderly_agee: 80\n")
    with pytest.raises(pm.PapermillExecutionError, match="elderly_agee"):
        execute("03_eligibility", small_db, tmp_path / "b", params_file=str(tmp_path / "bad.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("paper", ["paper_consistent", "paper_inconsistent"])
def test_the_reproduction_notebook_reads_another_papers_figures(paper, small_db, tmp_path):
    """Notebook 05 with `published` naming another paper's figures: a comparison, its
    words from that paper's numbers (never the seed's 57 ± 1.52), every check reported."""
    published = ROOT / "tests" / "data" / f"{paper}.csv"
    nb = execute("05_reproduction", small_db, tmp_path, published=str(published))
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "Compared with the paper" in text and "1.52" not in text
    checks = pd.read_csv(tmp_path / "tables" / "consistency_audit.csv")
    printed = checks[~checks["check"].str.startswith("reading ±")]  # readings, not findings
    assert (printed["verdict"] == "impossible").any() == (paper == "paper_inconsistent")
    repro = pd.read_csv(tmp_path / "tables" / "reproduction.csv")
    assert not repro["verdict"].astype(str).str.startswith("reproduced").any()
