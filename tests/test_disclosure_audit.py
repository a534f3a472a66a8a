"""Disclosure by audit (issue 26): the attacks written as tests, the data built here.

Each test is an attack that an output checker ran on the released files of one run or one
batch of a small practice not marked synthetic; each now finds nothing.
"""

from __future__ import annotations

import pytest

from analysis.errors import AnalysisError
from analysis.params import Params
from analysis.study import run_study
from conftest import patient, write_db


def _old_practice(tmp_path, oldest=104):
    """91 patients aged 40-80, the oldest woman aged ``oldest``."""
    pts = [patient(i, birth=f"{1935 + i % 40}-03-01", sex="F" if i % 2 else "M") for i in range(90)]
    pts.append(patient(90, birth=f"{2015 - oldest}-01-01", sex="F"))
    return write_db(tmp_path / "practice", {"patients": pts})


@pytest.mark.parametrize("rule", ["ohdsi", "opensafely"])
@pytest.mark.parametrize(
    "changes, named",
    [
        ({"elderly_age": 120}, "elderly_age 120"),
        ({"age_band_edges": [45, 65, 95]}, "age_band_edges 95"),
    ],
)
def test_top_coding_at_90_holds_whatever_the_parameters(tmp_path, rule, changes, named):
    """Attack 2: the age cap was max(90, elderly_age, band edges), so `elderly_age: 120`
    released the oldest band's mean and SD with a woman aged 104 in it. Under a rule a
    threshold above 90 is now refused by name; at 90 or less every age of 90 and over
    counts as 90."""
    db = _old_practice(tmp_path)
    with pytest.raises(AnalysisError, match=named + r".*top-coded"):
        run_study(db, Params.from_mapping({"disclosure": rule, **changes}))
    study = run_study(db, Params.from_mapping({"disclosure": rule, "elderly_age": 90}))
    assert int(study.cube.columns["age"].max()) == 90
    # with the rule off (not for release) the exact ages are the analyst's own
    off = run_study(db, Params.from_mapping({"disclosure": "off", **changes}))
    assert int(off.cube.columns["age"].max()) == 104


def test_a_grid_cell_above_90_is_refused_under_a_rule(tmp_path):
    from analysis.sensitivity import Grid, sensitivity_table

    db = _old_practice(tmp_path)
    study = run_study(db, Params(disclosure="ohdsi"))
    grid = Grid(base={}, vary={"elderly_age": [("75", 75), ("95", 95)]}, source="grid.yaml")
    with pytest.raises(AnalysisError, match="grid.yaml: elderly_age 95"):
        sensitivity_table(study.cube, grid, study.params, rule=study.disclosure_rule)
