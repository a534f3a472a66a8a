"""Disclosure control of the figures summary and the attrition table."""

import math

import pytest

from analysis import disclosure
from analysis.params import Params
from analysis.study import run_study
from conftest import pain, patient, write_db


def test_auto_is_off_for_synthetic_data_and_opensafely_otherwise():
    assert disclosure.resolve("auto", is_synthetic=True) is None
    assert disclosure.resolve("auto", is_synthetic=False).name == "opensafely"
    assert disclosure.resolve("off", is_synthetic=False) is None


def test_opensafely_redacts_7_or_fewer_and_rounds_to_5():
    r = disclosure.RULES["opensafely"]
    assert r.suppressed(7) and not r.suppressed(8) and r.suppressed(0)
    assert [r.round(x) for x in (8, 12, 13, 827)] == [10, 10, 15, 825]


def small_real_db(tmp_path):
    # 40 patients, 6 with pain (a count to redact), not marked synthetic
    pts = [patient(i) for i in range(40)]
    eps = [pain(i) for i in range(6)]
    return write_db(tmp_path / "real", {"patients": pts, "pain_episodes": eps})


def test_small_counts_are_redacted_with_what_depends_on_them(tmp_path):
    figs = {f["id"]: f for f in run_study(small_real_db(tmp_path)).figures()}
    assert figs["population.n"]["value"] == 40
    for i in ("pain.n", "pain.pct_of_population", "pain.age_mean", "pain.male_pct"):
        assert figs[i]["value"] is None and figs[i]["suppressed"], i
    assert figs["pain.pct_of_population"]["numerator"] is None


def test_rounded_percentages_are_computed_from_rounded_counts(tmp_path):
    pts = [patient(i) for i in range(103)]
    eps = [pain(i) for i in range(22)]
    figs = {f["id"]: f for f in run_study(write_db(tmp_path / "r", {"patients": pts, "pain_episodes": eps})).figures()}
    assert figs["population.n"]["value"] == 105 and figs["pain.n"]["value"] == 20
    assert figs["pain.pct_of_population"]["value"] == pytest.approx(100 * 20 / 105)


def test_attrition_hides_a_small_step_and_every_step_after_it(tmp_path):
    s = run_study(small_real_db(tmp_path), Params(disclosure="ohdsi"))
    a = s.attrition().set_index("step")
    assert a.loc["all_patients", "n"] == 40
    assert math.isnan(a.loc["target", "n"]) and math.isnan(a.loc["candidates", "n"])


def test_synthetic_default_is_not_suppressed(default_db):
    figs = {f["id"]: f for f in run_study(default_db).figures()}
    assert "suppressed" not in figs["target.n"] and figs["target.n"]["value"] == 121
