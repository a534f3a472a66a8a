"""Methods in words, results that print, tables for manuscripts, a new analysis from the
template, and `make lab`'s way of running a notebook: what a researcher reads and edits."""

import hashlib

import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from analysis.params import Params
from analysis.study import run_study
from conftest import PUB, ROOT, pain, patient, run_cli, write_db


def methods(*args):
    r = run_cli("methods", *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


# ----------------------------------------------------------------------------- methods
def test_the_methods_of_the_default_cohort_say_what_was_counted(default_db):
    text = methods("--data", str(default_db))
    # the population and its dates, in words
    assert "patients registered at any time between 1 January 2006 and 31 December 2015" in text
    # the key counts in sentences, the interval from statsmodels (Wilson), not from the code
    x, n = int(PUB["pain.n"]), int(PUB["population.n"])
    lo, hi = proportion_confint(x, n, alpha=0.05, method="wilson")
    assert (
        f"{x} of {n:,} patients ({100 * x / n:.1f}%, 95% CI {100 * lo:.1f}\u2013{100 * hi:.1f})"
    ) in text
    assert "moderate or severe (4+/10) osteo-articular pain of the hip, neck, back or knee" in text
    assert "Wilson EB. J Am Stat Assoc 1927" in text and "Firth D. Biometrika 1993" in text
    # every code list with its file name and the first 16 digits of its SHA-256
    for name in Params().risk_conditions + Params().risk_drugs:
        f = ROOT / "data" / "codelists" / f"{name}.csv"
        assert f"`{f.name}`" in text
        assert hashlib.sha256(f.read_bytes()).hexdigest()[:16] in text
    assert "No disclosure control was applied: the data are synthetic" in text
    assert "duckdb " in text and "statsmodels " in text  # software versions


def test_the_methods_follow_the_parameters(default_db):
    text = methods(
        "--data",
        str(default_db),
        "--set",
        "min_severity=7",
        "--set",
        "elderly_age=80",
        "--set",
        "ci_method=jeffreys",
    )
    assert "severe (7+/10) osteo-articular pain" in text and "moderate or severe" not in text
    assert "aged 80 years or more" in text and "aged 75" not in text
    assert "Jeffreys interval" in text and "Wilson" not in text
    mild = methods("--data", str(default_db), "--set", "min_severity=2")
    assert "severity 2 or more (mild included)" in mild


def test_the_methods_of_the_edge_cases_and_under_a_rule_use_released_counts(tmp_path):
    edge = ROOT / "data" / "edge_cases"
    text = methods("--data", str(edge), "--disclosure", "opensafely")
    assert "opensafely rule: counts below 8 withheld" in text
    assert "withheld" in text  # the small counts of the edge cases are not in the text
    page = methods("--data", str(edge), "--format", "html", "--out", str(tmp_path / "m.html"))
    assert page == ""
    html = (tmp_path / "m.html").read_text()
    assert html.startswith("<!doctype html>") and "<script" not in html


def test_a_data_name_with_markup_is_escaped_in_the_html(tmp_path):
    from analysis.methods import methods_text

    db = write_db(
        tmp_path / "x<img src=x onerror=alert(1)>",
        {"patients": [patient(i) for i in range(1, 30)], "pain_episodes": [pain(1)]},
        synthetic=True,
    )
    s = run_study(db, Params())
    html = methods_text(s.params, s, data_name=db.name).html()
    assert "<img" not in html and "&lt;img" in html


# ----------------------------------------------------------------------------- printing
def test_a_proportion_and_the_estimate_print_as_tables():
    from analysis.eligibility import eligibility_estimate
    from analysis.estimates import proportion

    p = proportion(827, 2503)
    html = p._repr_html_()
    assert "<table>" in html and "2,503" in html and "33.0" in html
    e = eligibility_estimate(121, 2503, Params())
    text = str(e)
    lines = text.splitlines()
    assert lines[0] == "Expected candidates for a local treatment (a lower bound)"
    # 121 x 0.5 = 60.5 candidates; Wilson interval of 121/2503 (statsmodels) x 0.5
    lo, hi = proportion_confint(121, 2503, alpha=0.05, method="wilson")
    row = next(line for line in lines if line.startswith("candidates in the database"))
    assert "60.5" in row and f"{2503 * lo * 0.5:.1f}\u2013{2503 * hi * 0.5:.1f}" in row
    assert "a prediction (one list)" in text and "<table>" in e._repr_html_()


# ----------------------------------------------------------------------------- manuscripts
def test_table_one_for_a_manuscript_holds_the_released_table_only(tmp_path):
    import docx
    import openpyxl

    from analysis.notebook import NotebookRun
    from analysis.outputs.manuscript import write_manuscript_table
    from analysis.statistics import table_one

    pts = [patient(i, birth="1950-01-01") for i in range(1, 60)]
    pts += [patient(i, birth="1930-01-01", sex="M") for i in range(60, 64)]  # 4 men: withheld
    db = write_db(
        tmp_path / "db", {"patients": pts, "pain_episodes": [pain(i) for i in range(1, 40)]}
    )
    run = NotebookRun("t", Params(disclosure="opensafely"), db, tmp_path / "out")
    run.study = run_study(db, run.params, drug_counts=True)
    released = run.save_table(table_one(run.study.cube), "table_one")
    table = run.manuscript_table(released, "table_one")
    d = docx.Document(tmp_path / "out" / "tables" / "table_one.docx")
    cells = [[c.text for c in r.cells] for r in d.tables[0].rows]
    assert cells[0] == list(table.frame.columns)
    assert cells[1:] == [list(map(str, r)) for r in table.frame.itertuples(index=False)]
    flat = " ".join(" ".join(r) for r in cells)
    assert "withheld" in flat  # the men of the pain cohort are too few
    ws = openpyxl.load_workbook(tmp_path / "out" / "tables" / "table_one.xlsx").active
    assert [c.value for c in ws[2]] == cells[0]
    with pytest.raises(Exception, match="disclosure step"):
        write_manuscript_table(table_one(run.study.cube), "table_one", tmp_path, "x")


# ----------------------------------------------------------------------------- a new analysis
def test_a_new_notebook_from_the_template_runs_and_is_in_sync(tmp_path, small_db):
    import jupytext
    import nbformat
    import papermill as pm

    from analysis.errors import AnalysisError
    from analysis.new_notebook import create_notebook

    (tmp_path / "jupytext.toml").write_text((ROOT / "notebooks" / "jupytext.toml").read_text())
    (tmp_path / "01_a.ipynb").write_text("{}")
    py, ipynb = create_notebook("visits_by_age", tmp_path)
    assert ipynb.name == "02_visits_by_age.ipynb" and py.name == "02_visits_by_age.py"
    nb = nbformat.read(ipynb, as_version=4)
    src = jupytext.read(py)
    assert [c.source for c in nb.cells] == [c.source for c in src.cells]
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
    words = sum(len(c.source.split()) for c in nb.cells if c.cell_type == "markdown")
    assert words >= 150
    with pytest.raises(AnalysisError, match="exists already"):
        create_notebook("02_other", tmp_path)
    with pytest.raises(AnalysisError, match="lower-case"):
        create_notebook("../escape", tmp_path)
    out = tmp_path / "out"
    pm.execute_notebook(
        str(ipynb),
        str(tmp_path / "o.ipynb"),
        parameters={"data": str(small_db), "output_dir": str(out)},
        kernel_name="analysis",
        cwd=str(ROOT / "notebooks"),
        progress_bar=False,
    )
    assert (out / "tables" / "sex.csv").exists() and (out / "disclosure.json").exists()


# ----------------------------------------------------------------------------- make lab
@pytest.mark.slow
def test_a_notebook_opened_from_the_notebooks_folder_runs_with_the_project_kernel(tmp_path):
    """What `make lab` does: the kernel "Python (analysis)" started in notebooks/, the stored
    notebook run top to bottom with its defaults (the relative path data/synthetic resolved
    from the project root)."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient

    spec = KernelSpecManager().get_kernel_spec("analysis")
    assert spec.display_name == "Python (analysis)"
    nb = nbformat.read(ROOT / "notebooks" / "03_eligibility.ipynb", as_version=4)
    for c in nb.cells:  # outputs go to a temporary folder, not reports/interactive
        if "parameters" in c.metadata.get("tags", []):
            c.source += f"\noutput_dir = {str(tmp_path)!r}"
    NotebookClient(
        nb, kernel_name="analysis", timeout=600, resources={"metadata": {"path": "notebooks"}}
    ).execute(cwd=str(ROOT / "notebooks"))
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    attrition = pd.read_csv(tmp_path / "tables" / "attrition.csv")
    assert int(attrition.loc[attrition["step"] == "all_patients", "n"].iloc[0]) == int(
        PUB["population.n"]
    )


# ----------------------------------------------------------------------------- importing
def test_the_example_mapping_imports_with_native_excel_dates_and_says_how_it_read_codings(
    tmp_path,
):
    from analysis.importer import import_extract

    report = import_extract(ROOT / "data" / "examples" / "import" / "mapping.yaml", tmp_path / "x")
    assert report["tables"] == {
        "patients": 6,
        "diagnoses": 5,
        "pain_episodes": 7,
        "prescriptions": 3,
    }
    c = report["codings"]
    assert {(r["source"], r["read_as"], r["rows"]) for r in c["patients.sex"]} == {
        ("1", "M", 3),
        ("2", "F", 3),
    }
    assert ("anca", "hip", 2) in {
        (r["source"], r["read_as"], r["rows"]) for r in c["pain_episodes.site"]
    }
    assert c["diagnoses.date"] == [
        {"source": "dates written %Y-%m-%d", "read_as": "date", "rows": 5}
    ]
    dates = pd.read_parquet(tmp_path / "x" / "diagnoses.parquet")["date"].astype(str).tolist()
    assert "2007-09-29" in dates  # the native Excel date cell of ID 1001


def test_a_date_error_suggests_date_format(tmp_path):
    from analysis.errors import AnalysisError
    from analysis.importer import import_extract

    src = ROOT / "data" / "examples" / "import"
    for f in src.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    m = (tmp_path / "mapping.yaml").read_text()
    (tmp_path / "mapping.yaml").write_text(m.replace('    date_format: "%d/%m/%Y"\n', "", 1))
    (tmp_path / "anagrafica_2016.csv").write_text(
        "ID_PAZ;SESSO;DATA_NASCITA;DATA_ISCR;DATA_REVOCA\n1005;2;14.02.38;03/03/1999;\n"
    )
    with pytest.raises(AnalysisError, match=r"row 1: expected a date .*date_format.*'14\.02\.38'"):
        import_extract(tmp_path / "mapping.yaml", tmp_path / "out")


def test_on_other_data_or_definitions_the_reproduction_is_a_comparison():
    from analysis import audit

    assert audit.is_reproduction(Params(), True)
    assert not audit.is_reproduction(Params(), False)  # user data
    assert not audit.is_reproduction(Params(elderly_age=80), True)  # other definitions
    assert audit.is_reproduction(Params(ci_method="jeffreys"), True)  # points unchanged
    figs = [{"id": "population.n", "value": PUB["population.n"]}, {"id": "pain.n", "value": 800}]
    verdicts = dict(
        audit.reproduction_table(figs, comparison=True)[["id", "verdict"]].itertuples(index=False)
    )
    assert verdicts["population.n"] == "same as the paper"
    assert verdicts["pain.n"] == "different from the paper"
    plain = dict(audit.reproduction_table(figs)[["id", "verdict"]].itertuples(index=False))
    assert plain["pain.n"] == "differs" and plain["population.n"] == "reproduced"


def test_the_audit_prints_as_a_table():
    from analysis import audit

    checks = audit.consistency_audit()
    report = audit.audit_report(checks)
    text = str(report)
    assert text.splitlines()[0].startswith("Audit of the published figures")
    assert len(text.splitlines()) == len(checks) + 4  # title, header, rule, rows, verdicts
    assert "<table>" in report._repr_html_()


def test_every_level_in_the_text_is_the_level_used():
    """With confidence_level 0.9 the text said "its 90% interval the exact 2.5% and 97.5%
    quantiles" and "the 95% prediction interval for a new practice"; the code used 5% and
    95%, and the set level."""
    from analysis.methods import methods_text
    from analysis.params import Params

    text = str(
        methods_text(Params(benefit_distribution="uniform", confidence_level=0.9), study=None)
    )
    assert "exact 5% and 95% quantiles" in text and "2.5%" not in text
    assert "the 90% prediction interval for a new practice" in text
    assert "95% prediction interval for a new practice" not in text


def test_the_estimate_says_the_benefit_share_is_an_assumption(default_db):
    """The 50% is the paper's assumption, not a finding; the interval treats the
    patients as a sample. Said in the results beside the number."""
    from analysis.methods import results_words

    text = results_words(run_study(default_db, Params()))
    assert "is the paper's assumption" in text and "not a finding of these data" in text
    assert "treats the practice's patients as a sample" in text
    other = results_words(run_study(default_db, Params(benefit_fraction=0.3)))
    assert "0.3, is an assumed value" in other and "at least" not in other.split("candidates")[1]
