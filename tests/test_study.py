"""The study's figures (analysis.study): declared once (FIGURES), computed by hand here for
a practice of ten patients, and withheld as a rule says."""

from __future__ import annotations

import pytest
from statsmodels.stats.proportion import proportion_confint

from analysis.params import Params
from analysis.study import AGE_STATISTICS, FIGURES, run_study
from conftest import pain, patient, write_db


@pytest.fixture
def ten(tmp_path):
    """Six women aged 65 (three with knee pain) and four men aged 75 on 2015-12-31."""
    women = [patient(i, birth="1950-06-15", sex="F") for i in range(6)]
    men = [patient(10 + i, birth="1940-01-01", sex="M") for i in range(4)]
    return write_db(
        tmp_path / "ten", {"patients": women + men, "pain_episodes": [pain(i) for i in range(3)]}
    )


def figures(db, rule):
    return {f["id"]: f for f in run_study(db, Params(disclosure=rule)).figures()}


def test_the_figures_are_the_declared_ones_in_order(ten):
    got = list(figures(ten, "off"))
    declared = []
    for f in FIGURES:  # an age summary is seven figures, each other declaration one
        ages = [f"{f.group}.{s}" for s, *_ in AGE_STATISTICS] if hasattr(f, "label") else None
        declared += ages or [f.id]
    assert got[:3] == ["database.n", "excluded.born_after_index", "excluded.not_registered"]
    assert got[3:] == declared


def test_the_figures_of_ten_patients_by_hand(ten):
    f = figures(ten, "off")
    assert f["population.n"]["value"] == 10 and f["pain.n"]["value"] == 3
    assert f["population.female_pct"]["value"] == pytest.approx(60.0)
    lo, hi = proportion_confint(6, 10, alpha=0.05, method="wilson")
    assert f["population.female_pct"]["ci_low"] == pytest.approx(100 * lo)
    assert f["population.female_pct"]["ci_high"] == pytest.approx(100 * hi)
    # ages 65 x 6 and 75 x 4: mean 69, SD sqrt((6 x 16 + 4 x 36) / 9)
    assert f["population.age_mean"]["value"] == pytest.approx(69.0)
    assert f["population.age_sd"]["value"] == pytest.approx((240 / 9) ** 0.5)
    assert f["population.age_min"]["value"] == 65 and f["population.age_max"]["value"] == 75
    assert f["pain.pct_of_population"]["value"] == pytest.approx(30.0)
    assert f["pain.age_mean"]["value"] == pytest.approx(65.0)
    assert f["pain.male_pct"]["value"] == 0


def test_under_a_rule_small_groups_and_extremes_are_withheld(ten):
    f = figures(ten, "ohdsi")
    assert f["population.n"]["value"] == 10  # 10 >= 5: released
    assert f["pain.n"]["value"] is None and f["pain.n"]["suppressed"]  # 3 < 5
    assert f["pain.pct_of_population"]["value"] is None
    assert f["pain.age_mean"]["value"] is None
    assert f["population.age_mean"]["value"] == 69.0  # rounded to one decimal
    assert f["population.age_min"]["value"] is None
    assert "(withheld: an extreme)" in f["population.age_min"]["description"]
    assert f["population.age_mean"]["disclosure"].startswith("ohdsi rule")
