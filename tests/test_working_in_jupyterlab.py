"""Working in JupyterLab (issue 27, section 2): the start cell runs again after a parameter
is edited, outputs are written by an explicit step, tables are shown by a named index, and
each parameter set has its own interactive folder."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from analysis import paths
from analysis.errors import AnalysisError
from analysis.notebook import interactive_folder
from analysis.params import Params

ROOT = Path(__file__).resolve().parents[1]


def _cell(nb, text):
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and text in c.source)


def test_the_start_cell_runs_twice_in_one_kernel(small_db, tmp_path):
    """Run notebook 03 top to bottom in one kernel, edit a parameter, run the start cell
    again: the new value is used ('run', 'study' and the tables later cells defined are
    not parameters), and a misspelt parameter is still refused by name."""
    nb = nbformat.read(ROOT / "notebooks" / "03_eligibility.ipynb", as_version=4)
    first = nbformat.v4.new_code_cell(f"data = {str(small_db)!r}\noutput_dir = {str(tmp_path)!r}")
    params = _cell(nb, "elderly_age = 75")
    nb.cells.insert(params + 1, first)
    client = NotebookClient(
        nb, kernel_name="analysis", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    )
    start = _cell(nb, "notebook.start(")

    def run_cell(source):
        nb.cells.append(nbformat.v4.new_code_cell(source))
        return client.execute_cell(nb.cells[-1], len(nb.cells) - 1)

    with client.setup_kernel():
        for i, cell in enumerate(list(nb.cells)):
            client.execute_cell(cell, i)
        run_cell("elderly_age = 80")
        client.execute_cell(nb.cells[start], start)
        look = run_cell("print(run.params.elderly_age, 'study' in dir())")
        assert look.outputs[0]["text"].split() == ["80", "True"]
        run_cell("elderly_agee = 70")
        from nbclient.exceptions import CellExecutionError

        with pytest.raises(CellExecutionError, match="elderly_agee"):
            client.execute_cell(nb.cells[start], start)
    assert (tmp_path / "results.csv").exists()  # written by run.finish(), the last cell


def test_every_notebook_ends_with_finish_and_imports_display():
    """Writing the outputs is an explicit last step; the .py twins run as scripts."""
    for py in sorted((ROOT / "notebooks").glob("0*.py")):
        text = py.read_text()
        assert text.rstrip().endswith("run.finish()"), py.name
        if "display(" in text:
            assert "from IPython.display import display" in text, py.name


def test_show_names_its_index(tmp_path):
    """`run.show(df, index="sex")`; an index that is not a column says what index means
    and which columns there are (it was a KeyError)."""
    import pandas as pd

    from analysis.notebook import NotebookRun

    run = NotebookRun(notebook="t", params=Params(), data=tmp_path, out=tmp_path)
    df = pd.DataFrame({"sex": ["F", "M"], "n": [3, 4]})
    assert list(run.show(df, index="sex").data.index) == ["F", "M"]
    assert list(run.show(df, "sex").data.index) == ["F", "M"]  # as notebooks wrote it
    with pytest.raises(AnalysisError, match="index='pain_by_band'.*one of: sex, n"):
        run.show(df, index="pain_by_band")


def test_each_parameter_set_has_its_own_interactive_folder():
    """Interactive runs without output_dir: the defaults in reports/interactive/<notebook>,
    other parameters in a folder named by them, as a batch run is named."""
    base = paths.REPORTS / "interactive"
    assert interactive_folder("03_eligibility", Params(), paths.SYNTHETIC) == (
        base / "03_eligibility"
    )
    assert interactive_folder("03_eligibility", Params(elderly_age=80), paths.SYNTHETIC) == (
        base / "elderly_age_80-03_eligibility"
    )
    other = interactive_folder("03_eligibility", Params(elderly_age=65), paths.SYNTHETIC)
    assert other != base / "elderly_age_80-03_eligibility"
    long = interactive_folder(
        "03_eligibility",
        Params(elderly_age=80, min_severity=7, benefit_distribution="uniform"),
        Path("/elsewhere/practice"),
    )
    assert long.name.startswith("data_practice_") and len(long.name) <= 80
