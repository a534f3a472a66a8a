"""Safe to release: each finding of the output checker's review, written as the attack
that found it, on small databases not marked synthetic."""

import json
import math

import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.outputs import disclosure
from analysis.params import Params
from analysis.study import run_study
from conftest import dx, pain, patient, rx, write_db

OS = disclosure.RULES["opensafely"]


def practice_of_60(tmp_path, name="p60"):
    """60 patients aged 65; the pain cohort is one patient, aged 104, with a risk drug."""
    pts = [patient(i, birth="1950-06-15", sex="F" if i % 3 else "M") for i in range(1, 60)]
    pts.append(patient(60, birth="1911-03-03", sex="F"))
    return write_db(
        tmp_path / name,
        {
            "patients": pts,
            "pain_episodes": [pain(60), pain(60, date="2012-03-03")],
            "prescriptions": [rx(60, "B01AC06")],
            "diagnoses": [dx(60, "V99.77", date=f"2009-0{m}-01") for m in range(1, 10)],
        },
    )


# ----------------------------------------------------------------------------- 1. paths
@pytest.mark.parametrize(
    "bad", ["../../src/escaped", "/abs/path", "a/b", "x'><img src=x onerror=alert(1)>", ""]
)
def test_scenario_and_source_names_that_are_not_safe_are_refused(tmp_path, small_db, bad):
    from analysis.batch import load_batch

    f = tmp_path / "b.yaml"
    f.write_text(json.dumps({"name": "b", "data": str(small_db), "scenarios": {bad: {}}}))
    with pytest.raises(AnalysisError, match="not a safe name"):
        load_batch(f, reports=tmp_path / "r")
    f.write_text(json.dumps({"name": "b", "data_sources": {bad: str(small_db)}}))
    with pytest.raises(AnalysisError, match="not a safe name"):
        load_batch(f, reports=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_a_write_outside_the_output_folder_is_refused(tmp_path):
    from analysis.outputs import inside

    assert inside(tmp_path, tmp_path / "a" / "b.csv") == tmp_path / "a" / "b.csv"
    with pytest.raises(AnalysisError, match="outside the output folder"):
        inside(tmp_path / "run", tmp_path / "run" / ".." / "escaped")


# ----------------------------------------------------------------------------- 2. fail closed
@pytest.mark.parametrize("rule", [None, OS])
def test_an_undeclared_table_is_refused_under_every_rule(tmp_path, rule):
    from analysis.outputs import save_table

    df = pd.DataFrame({"group": ["a", "b"], "n": [1, 2]})
    with pytest.raises(AnalysisError, match="(?s)'my_counts' is not declared.*declare_table"):
        save_table(df, "my_counts", tmp_path, rule)
    assert not (tmp_path / "tables").exists()


def test_a_declared_table_with_another_count_column_is_refused(tmp_path):
    from analysis.outputs import save_table

    sex = pd.DataFrame(
        {
            "sex": ["female"],
            "count": [828],
            "denominator": [828],
            "pct": [100.0],
            "ci_low": [99.0],
            "ci_high": [100.0],
            "method": ["wilson"],
            "level": [0.95],
        }
    )
    with pytest.raises(
        AnalysisError,
        match="does not match its declaration: missing declared column"
        r"\(s\) numerator; undeclared column\(s\) count",
    ):
        save_table(sex, "sex", tmp_path, OS, Params())
    assert not list(tmp_path.rglob("*.csv"))


def test_a_researcher_declares_a_table_in_a_few_lines_and_it_is_protected(tmp_path):
    from analysis.outputs import declare_table, save_table

    declare_table(
        "visits_by_band_test",
        columns=["band", "patients", "pct"],
        keys=["band"],
        counts={"patients": "patients"},
        pct={"pct": ("patients", "column_total")},
        partition=True,
        note="patients by band",
        replace=True,
    )
    df = pd.DataFrame(
        {"band": ["a", "b", "c"], "patients": [1, 40, 61], "pct": [1 / 102, 40 / 102, 61 / 102]}
    )
    out = save_table(df, "visits_by_band_test", tmp_path, OS).table
    # 1 withheld, and 40 with it (else 102 - 40 - 61 = 1); 61 rounded to 60, shares of the released
    # 100
    assert out["patients"].isna().tolist() == [True, True, False] and out["patients"].iloc[2] == 60
    assert out["pct"].iloc[2] == pytest.approx(60.0)
    written = pd.read_csv(tmp_path / "tables" / "visits_by_band_test.csv")
    assert 1 not in written["patients"].tolist() and 61 not in written["patients"].tolist()


# ----------------------------------------------------------------------------- 3 and 4
def test_statistics_of_a_withheld_group_are_withheld(tmp_path):
    from analysis import statistics
    from analysis.study import run_study

    s = run_study(practice_of_60(tmp_path), drug_counts=True)
    t = disclosure.protect(
        statistics.table_one(s.cube), "table_one", s.disclosure_rule, s.params
    ).table
    pain_cols = [c for c in t.columns if c.startswith("pain_")] + ["smd"]
    assert t[pain_cols].isna().all().all(), t[pain_cols]
    # the rest's count is the population minus the pain cohort: withheld with it
    assert math.isnan(t.loc[0, "rest_n"])
    assert 104 not in t.to_numpy().ravel().tolist()


def test_extremes_do_not_reveal_that_a_row_exists(tmp_path):
    from analysis import statistics
    from analysis.study import run_study

    s = run_study(practice_of_60(tmp_path))
    by_age = disclosure.protect(
        statistics.age_by_sex_counts(s.cube), "age_by_sex_counts", s.disclosure_rule
    )
    ages = by_age.table["age"].astype(str).tolist()
    assert "104" not in ages and "90+" not in ages and by_age.dropped_rows >= 1
    pyr = disclosure.protect(
        statistics.age_sex_counts(s.cube), "age_sex_pyramid", s.disclosure_rule
    ).table
    assert not any(str(g).startswith("10") for g in pyr["age_group"])


def test_top_coding_merges_the_old_into_one_row_before_protection():
    cells = pd.DataFrame({"sex": ["F"] * 5, "age": [60, 91, 95, 99, 104], "n": [40, 3, 3, 2, 1]})
    t = disclosure.protect(cells, "age_by_sex_counts", OS).table
    assert t["age"].tolist() == [60, "90+"] and t["n"].tolist() == [40, 10]


# ----------------------------------------------------------------------------- 5. rare codes
def test_a_rare_code_is_counted_in_patients_and_left_out(tmp_path):
    from analysis import quality
    from analysis.data import open_database

    db = open_database(practice_of_60(tmp_path))
    raw = quality.unmatched_codes(db)
    db.close()
    assert raw.set_index("code").loc["V99.77", "records"] == 9
    assert raw.set_index("code").loc["V99.77", "patients"] == 1
    r = disclosure.protect(raw, "unmatched_codes", OS)
    assert "V99.77" not in r.table["code"].tolist() and r.dropped_rows == 1


# ----------------------------------------------------------------------------- 6. exact statistics
def one_band_db(tmp_path):
    """Pain cohort: female 158 of 209 with a risk condition, male 219 of 242 (all aged 70,
    one band); and 40 women without pain."""
    pts, eps, dxs = [], [], []
    i = 0
    for sex, events, total in (("F", 158, 209), ("M", 219, 242)):
        for k in range(total):
            i += 1
            pts.append(patient(i, birth="1945-01-01", sex=sex))
            eps.append(pain(i))
            if k < events:
                dxs.append(dx(i, "401.9"))
    pts += [patient(1000 + k, birth="1960-01-01") for k in range(40)]  # 40 without pain
    return write_db(tmp_path / "oneband", {"patients": pts, "pain_episodes": eps, "diagnoses": dxs})


def test_odds_ratios_are_fitted_on_released_counts(tmp_path):
    from analysis import statistics
    from analysis.study import run_study

    p = Params(age_band_edges=(45,))
    s = run_study(one_band_db(tmp_path), p)
    raw = statistics.risk_condition_regression(s.cube, p)
    exact = (219 / 23) / (158 / 51)  # the cross-product ratio of the true counts
    assert raw.set_index("term").loc["male vs female", "odds_ratio"] == pytest.approx(exact)
    t = disclosure.protect(raw, "risk_condition_odds_ratios", s.disclosure_rule, p).table.set_index(
        "term"
    )
    released = (220 / 25) / (160 / 50)  # the same ratio of the counts rounded to 5
    assert t.loc["male vs female", "odds_ratio"] == round(released, 2) != round(exact, 2)


def test_percentages_come_from_released_counts_over_released_totals(tmp_path):
    from analysis import statistics
    from analysis.study import run_study

    s = run_study(one_band_db(tmp_path), Params(age_band_edges=(45,)))
    combos = disclosure.protect(
        statistics.condition_combinations(s.cube), "condition_combinations", s.disclosure_rule
    ).table
    total = OS.round(451)
    for _, r in combos.iterrows():
        assert r["n"] % 5 == 0 and r["pct_of_pain"] == pytest.approx(100 * r["n"] / total)
    t1 = disclosure.protect(
        statistics.table_one(s.cube), "table_one", s.disclosure_rule, s.params
    ).table
    fem = t1[t1["variable"] == "female"].iloc[0]
    assert fem["pain_n"] == 210 and fem["pain_pct"] == pytest.approx(100 * 210 / 450)


def test_duplicates_and_their_shares_are_released_rounded():
    dups = pd.DataFrame(
        {
            "table": ["diagnoses"],
            "records": [8324],
            "exact_duplicates": [901],
            "patients": [300],
            "pct": [100 * 901 / 8324],
        }
    )
    t = disclosure.protect(dups, "duplicates", OS).table.iloc[0]
    assert (
        t["records"] == 8325
        and t["exact_duplicates"] == 900
        and t["pct"] == pytest.approx(100 * 900 / 8325)
    )


# ----------------------------------------------------------------------------- 7. failed runs
def test_a_validation_error_on_real_data_is_withheld_from_the_notebook(tmp_path, monkeypatch):
    from analysis import notebook

    monkeypatch.setenv("ANALYSIS_LOG_DIR", str(tmp_path / "logs"))
    bad = write_db(tmp_path / "bad", {"patients": [patient(987654321, birth="2099-01-01")]})
    with pytest.raises(AnalysisError) as exc:
        notebook.start(
            {"data": str(bad), "output_dir": str(tmp_path / "out")}, notebook="01_cohort_profile"
        )
    text = str(exc.value)
    assert "987654321" not in text and "2099" not in text
    assert "python -m analysis figures --data" in text
    logged = "".join(p.read_text() for p in (tmp_path / "logs").iterdir())
    assert "2099-01-01" in logged  # the details: in a log outside the report folder


# ----------------------------------------------------------------------------- 8. escaping
def test_every_value_in_the_html_is_escaped(tmp_path):
    from types import SimpleNamespace

    from analysis.batch.index import render_index
    from analysis.notebook import display_table

    codes = pd.DataFrame(
        {"code": ["<img src=x onerror=alert(9)>"], "patients": [12], "records": [12]}
    )
    assert "<img src=x" not in display_table(codes).to_html()
    evil = "x'><img src=x onerror=alert(1)>"
    run = tmp_path / "b" / evil
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(
        json.dumps({"notebook": evil, "scenario": evil, "status": "ok"})
    )
    page = render_index(
        SimpleNamespace(out=tmp_path / "b", runs=[], name="b", path=tmp_path / "b.yaml")
    )
    assert "<img src=x" not in page and "onerror=alert(1)>" not in page.replace("&gt;", "")


# ----------------------------------------------------------------------------- 9. passwords
SECRET = "Pa55-Secret-Value"


@pytest.mark.parametrize(
    "text",
    [
        f"postgresql://me:{SECRET}@h/db",
        f"POSTGRESQL://me:{SECRET}@h/db",
        f"Postgres://me@h/db?password={SECRET}",
        f"postgresql://me@h/db?sslmode=require&PASSWORD={SECRET}",
        f"host=h dbname=db password={SECRET}",
    ],
)
def test_every_libpq_spelling_of_a_password_is_refused_without_echo(tmp_path, small_db, text):
    from analysis.batch import load_batch
    from analysis.credentials import holds_password
    from analysis.data import open_database

    assert holds_password(text)
    for raw in (
        {"name": "b", "data": text},
        {"name": "b", "data": str(small_db), "scenarios": {"s": {"grid": text}}},
    ):
        f = tmp_path / "b.yaml"
        f.write_text(json.dumps(raw))
        with pytest.raises(AnalysisError, match="holds a database password") as exc:
            load_batch(f, reports=tmp_path / "r")
        assert SECRET not in str(exc.value)
    with pytest.raises(AnalysisError) as exc:
        open_database(text)
    assert SECRET not in str(exc.value)


def test_urls_without_a_password_are_not_refused():
    from analysis.credentials import holds_password

    assert not holds_password("postgresql://me@h:5432/db?schema=x&password_env=MYPW")
    assert not holds_password("data/private/mine") and not holds_password(
        "spark://local[2]?path=/x"
    )


# ----------------------------------------------------------------------------- 10 and 13
def test_weaker_settings_than_the_rule_are_stamped_not_for_release(tmp_path):
    from analysis.study import run_study

    weak = Params(disclosure_threshold=1, disclosure_rounding=1)
    assert disclosure.release_status(weak, is_synthetic=False) == "NOT FOR RELEASE"
    assert (
        disclosure.release_status(Params(disclosure_threshold=10, disclosure_rounding=10), False)
        == "aggregates under disclosure control"
    )
    assert (
        disclosure.release_status(Params(disclosure="ohdsi", disclosure_threshold=4), False)
        == "NOT FOR RELEASE"
    )
    figs = run_study(practice_of_60(tmp_path), weak).figures()
    assert all(f["release"] == "NOT FOR RELEASE" for f in figs)


def test_disclosure_off_is_accepted_as_written_in_yaml(tmp_path):
    from analysis.cli import _overrides
    from analysis.params import load_params

    f = tmp_path / "p.yaml"
    f.write_text("disclosure: off\n")
    assert load_params(f).disclosure == "off"
    assert load_params(None, _overrides(["disclosure=off"])).disclosure == "off"


# ----------------------------------------------------------------------------- 11 and 12
def test_import_never_deletes_a_file_it_did_not_write(tmp_path):
    from analysis.importer import import_extract

    src = write_db(tmp_path / "src", {"patients": [patient(i) for i in range(1, 4)]})
    into = tmp_path / "mine"
    into.mkdir()
    (into / "dataset.json").write_text('{"synthetic": false, "extract_date": "2016-01-31"}')
    (into / "notes.txt").write_text("my notes")
    (into / "original_extract.csv").write_text("id\n1\n")
    mapping = tmp_path / "m.yaml"
    from conftest import COLUMNS

    mapping.write_text(
        "tables:\n"
        + "".join(
            f"  {t}: {{files: [{src / (t + '.csv')}], "
            f"columns: {{{', '.join(f'{c}: {c}' for c in cols)}}}}}\n"
            for t, cols in COLUMNS.items()
        )
    )
    with pytest.raises(AnalysisError, match="did not write .*notes.txt.*nothing was deleted"):
        import_extract(mapping, into)
    assert (into / "notes.txt").read_text() == "my notes" and (
        into / "original_extract.csv"
    ).exists()
    # into a new folder it works, and a second import replaces its own files only
    import_extract(mapping, tmp_path / "fresh")
    import_extract(mapping, tmp_path / "fresh")
    (tmp_path / "fresh" / "mine.txt").write_text("added by hand")
    with pytest.raises(AnalysisError, match="mine.txt"):
        import_extract(mapping, tmp_path / "fresh")
    assert (tmp_path / "fresh" / "mine.txt").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["sensitivity", "--grid", f"postgresql://me:{SECRET}@h/db"],
        ["figures", "--data", f"POSTGRESQL://me:{SECRET}@h/db"],
        ["figures", "--set", f"data=postgres://me@h/db?password={SECRET}"],
        ["load", "--data", "x", "--into", f"postgresql://me:{SECRET}@h/db"],
    ],
)
def test_the_command_line_refuses_a_password_without_echo(argv, capsys):
    from analysis.cli import main

    assert main(argv) == 1  # refused input
    err = capsys.readouterr()
    assert SECRET not in err.err + err.out and "holds a database password" in err.err


def test_a_mean_that_rests_on_few_patients_is_withheld(tmp_path):
    """Number of drugs: one patient of the pain cohort has a drug; a mean of 0.01 (and its
    SD) would tell that a very few have one, so the pain cohort's value is withheld; the
    rest, where nobody has a drug, is withheld too (a zero is disclosive)."""
    from analysis import statistics
    from analysis.study import run_study

    pts = [patient(i) for i in range(1, 201)]
    eps = [pain(i) for i in range(1, 101)]
    s = run_study(
        write_db(
            tmp_path / "d",
            {"patients": pts, "pain_episodes": eps, "prescriptions": [rx(1, "N02BE01")]},
        ),
        drug_counts=True,
    )
    raw = statistics.table_one(s.cube).set_index("variable")
    assert raw.loc["number of drugs prescribed in the window", "pain_mean"] == pytest.approx(0.01)
    t = disclosure.protect(
        statistics.table_one(s.cube), "table_one", s.disclosure_rule, s.params
    ).table
    row = t.set_index("variable").loc["number of drugs prescribed in the window"]
    assert row[["pain_mean", "pain_sd", "rest_mean", "rest_sd", "smd"]].isna().all()
    age = t.set_index("variable").loc["age, years"]
    assert age["pain_mean"] == 65.0 and age["rest_mean"] == 65.0  # ages rest on the whole group


@pytest.mark.parametrize(
    "argv",
    [
        ["figures", "--set", f"index_date=postgresql://u:{SECRET}@h/db"],
        ["figures", "--set", f"index_date=postgresql://u:{SECRET.replace('-', '%2D')}@h/db"],
    ],
)
def test_a_password_inside_another_value_is_refused(argv, capsys):
    from analysis.cli import main

    assert main(argv) == 1  # refused input
    err = capsys.readouterr().err
    assert SECRET not in err and SECRET.replace("-", "%2D") not in err


def test_a_password_in_a_parameter_or_grid_file_is_refused(tmp_path):
    from analysis.params import load_params
    from analysis.sensitivity import load_grid

    f = tmp_path / "p.yaml"
    f.write_text(f"index_date: postgresql://u:{SECRET}@h/db\n")
    with pytest.raises(AnalysisError, match="holds a database password") as exc:
        load_params(f)
    assert SECRET not in str(exc.value)
    g = tmp_path / "g.yaml"
    g.write_text(f'vary:\n  elderly_age: {{"postgresql://u:{SECRET}@h/db": 75, "80": 80}}\n')
    with pytest.raises(AnalysisError, match="holds a database password") as exc:
        load_grid(g)
    assert SECRET not in str(exc.value)


def test_only_a_true_mark_makes_data_synthetic(tmp_path):
    from analysis.data import is_marked_synthetic, open_database

    db = practice_of_60(tmp_path)
    for text, expected in (
        ('{"synthetic": "false"}', False),
        ('{"synthetic": 1}', False),
        ('{"synthetic": "true"}', False),
        ('{"synthetic": true}', True),
    ):
        (db / "dataset.json").write_text(text)
        assert is_marked_synthetic(db) is expected, text
        d = open_database(db)
        assert d.is_synthetic is expected, text
        d.close()


def test_a_batch_never_deletes_a_file_it_did_not_write(tmp_path, small_db):
    """The attack: a user's notes inside the batch's folder, in a folder named like a
    run's temporary, inside a run folder and a failed run's folder."""
    from analysis.batch import load_batch, run_batch

    f = tmp_path / "mine.yaml"
    f.write_text(f"name: mine\ndata: {small_db}\nruns:\n  - notebooks: [03_eligibility]\n")
    b = load_batch(f, reports=tmp_path / "u")
    planted = [
        b.out / ".tmp-keep" / "notes.txt",
        b.out / "default-03_eligibility" / "thesis.txt",
        b.out / "default-03_eligibility.failed" / "x.txt",
        b.out / "my_index_notes.md",
    ]
    for p in planted:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("mine")
    for p in planted:
        with pytest.raises(AnalysisError, match="holds files this tool did not write"):
            run_batch(b, jobs=1, progress=False)
        assert all(q.read_text() == "mine" for q in planted if q.exists())
        p.unlink()
        if p.parent != b.out and not any(p.parent.iterdir()):
            p.parent.rmdir()


def test_a_code_that_a_spreadsheet_would_run_is_defused(tmp_path):
    from analysis.outputs import write_csv

    df = pd.DataFrame(
        {
            "code": ['=HYPERLINK("http://evil/")', "401.9", "-1+1", "+0.00"],
            "patients": [10, 10, -5, 1],
        }
    )
    text = write_csv(df, tmp_path / "t.csv").read_text()
    assert "'=HYPERLINK" in text and "'-1+1" in text and "\n401.9," in text and ",-5\n" in text
    assert "\n+0.00,1\n" in text  # a signed number is a number


@pytest.mark.parametrize(
    "argv", [["sensitivity", "--disclosure", "off"], ["audit", "--set", "disclosure_threshold=1"]]
)
def test_every_command_stamps_unprotected_real_data(tmp_path, capsys, argv):
    from analysis.cli import main

    assert main([argv[0], "--data", str(practice_of_60(tmp_path)), *argv[1:]]) == 0
    assert "NOT FOR RELEASE" in capsys.readouterr().out


def test_one_withheld_reason_for_leaving_patients_out_takes_the_other_with_it(tmp_path):
    """database = population + born after + not registered: with the first two and one
    reason released, the other would follow by subtraction."""
    from analysis.study import run_study

    pts = [patient(i) for i in range(1, 101)]
    pts += [patient(200 + i, registered_to="2001-01-01") for i in range(30)]  # 30 not registered
    pts += [patient(300 + i, birth="2016-05-05", registered_from="2016-05-05") for i in range(3)]
    figs = {f["id"]: f for f in run_study(write_db(tmp_path / "x", {"patients": pts})).figures()}
    assert figs["database.n"]["value"] == 135 and figs["population.n"]["value"] == 100
    assert figs["excluded.born_after_index"]["value"] is None
    assert figs["excluded.not_registered"]["value"] is None
    t = __import__("analysis.study", fromlist=["x"]).run_study(
        write_db(tmp_path / "y", {"patients": pts})
    )
    a = t.attrition().set_index("step")
    assert math.isnan(a.loc["excluded_born_after_index", "n"]) and math.isnan(
        a.loc["excluded_not_registered", "n"]
    )


def test_the_release_sheet_matches_grid_cells_by_their_varied_parameters(tmp_path):
    """A sensitivity grid's rows are named by its varied parameters (extra label columns),
    not by its declared key alone: each cell is compared with the same cell of the other
    run, whatever the row order."""
    from analysis.outputs.release import _differences

    head = "elderly_age,benefit_fraction,is_base,population_n,pain_n,target_n,interval\n"
    rows = {
        "a": "75,0.5,True,135,58,21,sampling\n80,0.5,False,135,58,12,sampling\n",
        "b": "80,0.5,False,135,58,12,sampling\n75,0.5,True,135,58,19,sampling\n",
    }
    for run, body in rows.items():
        (tmp_path / run / "tables").mkdir(parents=True)
        (tmp_path / run / "tables" / "sensitivity_grid.csv").write_text(head + body)
    found = _differences(tmp_path / "a", tmp_path / "b", threshold=5, step=1)
    assert found == [
        "sensitivity_grid.target_n (interval=sampling, elderly_age=75, benefit_fraction=0.5): "
        "21 vs 19, a difference below 5"
    ]


# ------------------------------------------------ differences of nested released counts
def nested_practice(tmp_path):
    """65 patients in the database, 3 of them born after the index date (left out); of the
    62: 60 women and 2 men (61, 62); a pain cohort of 39 (1-39), 37 of them recurrent
    (1-37); aged 80, 20 (1-20); a risk condition (hypertension, 401), 30 (1-30). So the target
    subgroup is 1-20."""
    pts = [
        patient(i, birth="1935-06-15" if i <= 20 else "1965-06-15", sex="M" if i > 60 else "F")
        for i in range(1, 63)
    ] + [patient(i, birth="2020-01-01") for i in (63, 64, 65)]
    episodes = [pain(i) for i in range(1, 40)] + [pain(i, "2012-06-01") for i in range(1, 38)]
    return write_db(
        tmp_path / "nested",
        {
            "patients": pts,
            "pain_episodes": episodes,
            "diagnoses": [dx(i, "401") for i in range(1, 31)],
        },
    )


def test_a_count_within_the_threshold_of_a_count_that_contains_it_is_withheld(tmp_path):
    """Released both, 62 patients and 60 women would tell that 2 are men; 39 in the pain
    cohort and 37 recurrent, that 2 are not; 65 in the database and 62 in the population,
    that 3 were left out. The contained count goes (the database's, for the population);
    counts whose difference is 5 or more, or nothing, stay (ohdsi: below 5 withheld)."""
    study = run_study(nested_practice(tmp_path), Params(disclosure="ohdsi"))
    figs = {f["id"]: f["value"] for f in study.figures()}
    assert figs["database.n"] is None  # 65 - 62 = 3
    assert figs["population.n"] == 62 and figs["pain.n"] == 39
    assert figs["population.female_pct"] is None  # 62 - 60 = 2 men
    assert figs["pain.recurrent_pct"] is None  # 39 - 37 = 2
    assert figs["population.elderly_pct"] == pytest.approx(100 * 20 / 62)
    assert figs["pain.elderly_pct"] == pytest.approx(100 * 20 / 39)  # 20 - 20 = 0: stays
    assert figs["pain_risk.n"] == 30  # 39 - 30 = 9
    assert figs["target.n"] == 20  # within pain & recurrent (37) and pain & aged 80 (20)
    att = study.attrition().set_index("step")["n"]
    assert math.isnan(att["database"]) and att["all_patients"] == 62
    assert (att["pain"], att["pain_risk_condition"], att["target"]) == (39, 30, 20)
    assert att["candidates"] == 10


def test_nested_counts_by_hand():
    rule = disclosure.RULES["ohdsi"]
    counts = {"all": 100, "a": 97, "b": 60, "ab": 58, "c": 100}
    parents = {"a": ("all",), "b": ("all",), "ab": ("a", "b"), "c": ("all",)}
    # a: 3 from all; ab: 2 from b (a is withheld, so a - ab is not released); c: equal
    assert disclosure.nested_withheld(counts, parents, rule) == {"a", "ab"}
    assert disclosure.nested_withheld({"all": 100, "a": 4}, {"a": ("all",)}, rule) == {"a"}


def test_table_one_withholds_a_share_whose_complement_is_a_small_group(tmp_path):
    """Table 1 of the same practice: 21 women among the 23 patients outside the pain
    cohort would tell that 2 are men; the row goes in both groups (its two counts add up
    to the women published elsewhere); the group sizes stay."""
    from analysis.outputs import protect
    from analysis.statistics import table_one

    study = run_study(nested_practice(tmp_path), Params(disclosure="ohdsi"))
    t = protect(
        table_one(study.cube, study.params), "table_one", study.disclosure_rule, study.params
    )
    rows = t.table.set_index("variable")
    assert (rows.at["patients, n", "pain_n"], rows.at["patients, n", "rest_n"]) == (39, 23)
    assert math.isnan(rows.at["female", "pain_n"]) and math.isnan(rows.at["female", "rest_n"])
    # hypertension: 30 of 39 (9 without) would stay, but none of the 23 has it (a zero)
    assert math.isnan(rows.at["hypertension", "pain_n"])


def test_a_prevalence_whose_complement_is_a_small_group_is_withheld():
    from analysis.outputs import protect

    df = pd.DataFrame(
        {
            "condition": ["hypertension", "diabetes"],
            "codelist": ["risk_condition_hypertension", "risk_condition_diabetes_mellitus"],
            "numerator": [37, 20],
            "denominator": [39, 39],
            "pct": [100 * 37 / 39, 100 * 20 / 39],
            "ci_low": [0.0, 0.0],
            "ci_high": [0.0, 0.0],
            "level": [0.95, 0.95],
            "method": ["wilson", "wilson"],
        }
    )
    t = protect(df, "condition_prevalence", disclosure.RULES["ohdsi"], Params()).table
    assert math.isnan(t["numerator"].iloc[0]) and math.isnan(t["pct"].iloc[0])  # 2 without
    assert t["numerator"].iloc[1] == 20 and t["pct"].iloc[1] == pytest.approx(100 * 20 / 39)


def twelve_old(tmp_path):
    """40 patients; 12 with recurrent pain and a risk drug: 2 aged 76, 10 aged 80."""
    pts = [patient(i, birth="1939-06-01" if i <= 2 else "1935-06-01") for i in range(1, 13)]
    pts += [patient(i, birth="1970-01-01") for i in range(13, 41)]
    return write_db(
        tmp_path / "twelve",
        {
            "patients": pts,
            "pain_episodes": [pain(i) for i in range(1, 13)]
            + [pain(i, "2012-06-01") for i in range(1, 13)],
            "prescriptions": [rx(i, "B01AC06") for i in range(1, 13)],
        },
    )


def test_every_output_of_a_run_withholds_the_target_subgroup_the_figures_withhold(tmp_path):
    """Aged 77 or more: a target subgroup of 10 beside a recurrent pain cohort of 12 (2 by
    subtraction). The figures withhold it; so do the estimate and the attrition, which
    would otherwise release the same 10."""
    study = run_study(twelve_old(tmp_path), Params(disclosure="ohdsi", elderly_age=77))
    figs = {f["id"]: f["value"] for f in study.figures()}
    assert figs["target.n"] is None and figs["pain.recurrent_pct"] == 100  # 12 of 12
    assert study.eligibility() is None
    att = study.attrition().set_index("step")["n"]
    assert att["pain"] == 12 and math.isnan(att["target"]) and math.isnan(att["candidates"])
    # at 76 the target is the 12 of the recurrent pain cohort: released everywhere
    study = run_study(twelve_old(tmp_path / "76"), Params(disclosure="ohdsi", elderly_age=76))
    assert (
        study.eligibility().target_n == 12
        and study.attrition().set_index("step")["n"]["target"] == 12
    )


def test_grid_cells_one_threshold_apart_are_not_both_released(tmp_path):
    """A sensitivity grid over the age threshold: 12 target patients aged 75 or more, 2 of
    them aged 76; with 75 and 77 both released, 12 - 10 would tell the 2. The base cell
    (75, released in the figures too) stays; 77 and 80 (2 fewer, within it) are withheld;
    76 (the same 12: an empty difference) stays."""
    from analysis.sensitivity import Grid, sensitivity_table

    study = run_study(twelve_old(tmp_path), Params(disclosure="ohdsi"))
    grid = Grid(base={}, vary={"elderly_age": [(str(a), a) for a in (75, 76, 77, 80)]}, source="t")
    t = sensitivity_table(study.cube, grid, study.params, study.disclosure_rule)
    got = dict(zip(t["elderly_age"], t["target_n"], strict=True))
    assert (got["75"], got["76"]) == (12, 12)
    assert math.isnan(got["77"]) and math.isnan(got["80"])
    # without a rule every cell is counted: 12, 12, 10, 10
    off = sensitivity_table(study.cube, grid, study.params, None)
    assert list(off["target_n"]) == [12, 12, 10, 10]
