"""The sensitivity grid: every cell from one cube, and each cell equal to a separate
analysis run with that cell's parameters."""

import pytest

from analysis.data import open_database
from analysis.errors import AnalysisError
from analysis.params import Params
from analysis.sensitivity import grid_cube, load_grid, sensitivity_table, tornado_table
from analysis.study import run_study

# module-scoped fixtures (or fixed database schemas): one worker of a parallel run
pytestmark = pytest.mark.xdist_group("test_sensitivity")


@pytest.fixture(scope="module")
def grid_and_table(default_db):
    grid = load_grid()
    db = open_database(default_db)
    cube = grid_cube(db, Params(), grid)
    db.close()
    return grid, sensitivity_table(cube, grid, Params())


def test_the_default_grid_has_every_combination(grid_and_table):
    grid, table = grid_and_table
    assert grid.size == 5 * 2 * 2 * 3 * 3 == len(table)
    assert table["is_base"].sum() == 1


def test_the_base_cell_is_the_papers_target(grid_and_table):
    _, table = grid_and_table
    base = table[table["is_base"]].iloc[0]
    assert base["target_n"] == 121 and base["candidates"] == pytest.approx(60.5)


@pytest.mark.parametrize(
    "changes,labels",
    [
        ({"elderly_age": 65, "min_episodes": 3}, {"elderly_age": "65", "min_episodes": "3"}),
        ({"min_severity": 7, "elderly_age": 85}, {"min_severity": "7", "elderly_age": "85"}),
        (
            {
                "risk_conditions": [
                    "risk_condition_cardiovascular_disease",
                    "risk_condition_heart_failure",
                    "risk_condition_renal_impairment",
                    "risk_condition_gastrointestinal_disorders",
                ]
            },
            {"risk_conditions": "cardiovascular_renal_gi"},
        ),
    ],
)
def test_each_cell_equals_a_separate_analysis(default_db, grid_and_table, changes, labels):
    _, table = grid_and_table
    sub = table[(table["benefit_fraction"] == "0.5")]
    for k, v in labels.items():
        sub = sub[sub[k] == v]
    for k in {"elderly_age", "min_episodes", "min_severity", "risk_conditions"} - set(labels):
        base = {
            "elderly_age": "75",
            "min_episodes": "2",
            "min_severity": "4",
            "risk_conditions": "all_seven",
        }[k]
        sub = sub[sub[k] == base]
    assert len(sub) == 1
    study = run_study(default_db, Params().replace(**changes))
    f = study.cube.flags()
    assert sub.iloc[0]["target_n"] == study.cube.count(f["target"])
    assert sub.iloc[0]["pain_n"] == study.cube.count(f["pain"])


def test_tornado_ranks_by_swing(grid_and_table):
    grid, table = grid_and_table
    t = tornado_table(table, grid, Params())
    assert list(t["swing"]) == sorted(t["swing"], reverse=True)
    assert set(t["parameter"]) == set(grid.vary)


def test_a_misspelt_grid_parameter_is_refused(tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text("vary:\n  elderly_agee: [70, 80]\n")
    with pytest.raises(AnalysisError, match="elderly_age"):
        load_grid(f)


def test_an_invalid_grid_value_is_refused(tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text("vary:\n  benefit_fraction: [0.5, 1.5]\n")
    with pytest.raises(AnalysisError, match="benefit_fraction"):
        load_grid(f)


def test_a_base_value_outside_the_grid_is_added_to_it(default_db):
    grid = load_grid()
    base = Params(elderly_age=77)
    db = open_database(default_db)
    cube = grid_cube(db, base, grid)
    db.close()
    table = sensitivity_table(cube, grid, base)
    assert table["is_base"].sum() == 1 and "77" in set(table["elderly_age"])
    assert len(table) == 6 * 2 * 2 * 3 * 3
    t = tornado_table(table, grid, base)
    assert t.loc[t["parameter"] == "elderly_age", "base_value"].iloc[0] == "77"


def test_the_sensitivity_command_refuses_bad_data_with_the_validation_message(tmp_path):
    from conftest import pain, patient, run_cli, write_db

    folder = write_db(
        tmp_path / "db", {"patients": [patient(1, birth="1950-13-45")], "pain_episodes": [pain(1)]}
    )
    r = run_cli("sensitivity", "--data", str(folder), "--json")
    assert r.returncode != 0 and r.stdout == ""
    assert "column birth_date, row 1" in r.stderr and "Traceback" not in r.stderr
