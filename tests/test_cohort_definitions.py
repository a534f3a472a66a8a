"""Each definition of the methods, on small hand-made databases where the answer is obvious."""

import pytest

from analysis.params import Params
from analysis.study import run_study
from conftest import PUB, dx, pain, patient, rx, write_db


def flags_of(tmp_path, tables, **params):
    """Counts of the main flags for a hand-made database."""
    study = run_study(write_db(tmp_path / "db", tables), Params.from_mapping(params))
    f = study.cube.flags()
    return {
        k: study.cube.count(f[k])
        for k in (
            "pain",
            "recurrent",
            "elderly",
            "risk_condition",
            "risk_drug",
            "pain_risk",
            "target",
        )
    }


def test_the_population_is_every_patient_in_the_database(tmp_path):
    s = run_study(write_db(tmp_path / "db", {"patients": [patient(i) for i in range(5)]}))
    assert s.cube.n_total == 5


def test_pain_cohort_requires_moderate_or_severe_pain(tmp_path):
    t = {
        "patients": [patient(1), patient(2)],
        "pain_episodes": [pain(1, severity=3), pain(2, severity=4)],
    }
    assert flags_of(tmp_path, t)["pain"] == 1


@pytest.mark.parametrize(
    "site,cause,counted",
    [
        ("hip", "osteoarticular", 1),
        ("neck", "osteoarticular", 1),
        ("back", "osteoarticular", 1),
        ("knee", "osteoarticular", 1),
        ("shoulder", "osteoarticular", 0),
        ("other", "osteoarticular", 0),
        ("knee", "traumatic", 0),
        ("back", "neuropathic", 0),
        ("hip", "other", 0),
    ],
)
def test_pain_cohort_requires_hip_neck_back_or_knee_of_osteoarticular_cause(
    tmp_path, site, cause, counted
):
    t = {"patients": [patient(1)], "pain_episodes": [pain(1, site=site, cause=cause)]}
    assert flags_of(tmp_path, t)["pain"] == counted


@pytest.mark.parametrize(
    "date,counted",
    [
        ("2005-12-31", 0),  # the day before the window
        ("2006-01-01", 1),  # the first day of the window
        ("2015-12-31", 1),  # the index date
        ("2016-01-01", 0),  # after the index date: ignored, not refused
    ],
)
def test_the_window_includes_both_ends(tmp_path, date, counted):
    t = {"patients": [patient(1)], "pain_episodes": [pain(1, date=date)]}
    assert flags_of(tmp_path, t)["pain"] == counted


def test_two_qualifying_episodes_make_pain_recurrent(tmp_path):
    t = {
        "patients": [patient(1), patient(2), patient(3)],
        "pain_episodes": [
            pain(1),
            pain(1, date="2012-01-01"),
            pain(2),
            pain(2, date="2012-01-01", severity=2),  # one mild: not recurrent
            pain(3),
        ],
    }
    f = flags_of(tmp_path, t)
    assert f["pain"] == 3 and f["recurrent"] == 1


@pytest.mark.parametrize(
    "birth,elderly",
    [
        ("1940-12-31", 1),  # 75th birthday on the index day: aged exactly 75
        ("1941-01-01", 0),  # 75th birthday the day after: 74
        ("1925-06-01", 1),
    ],
)
def test_aged_75_in_completed_years_at_the_index_date_is_elderly(tmp_path, birth, elderly):
    assert flags_of(tmp_path, {"patients": [patient(1, birth=birth)]})["elderly"] == elderly


@pytest.mark.parametrize(
    "index_date,age",
    [
        ("2015-02-28", 74),  # born 29 Feb 1940: birthday not reached on 28 Feb of a non-leap year
        ("2015-03-01", 75),
        ("2016-02-29", 76),
    ],
)
def test_a_29_february_birthday(tmp_path, index_date, age):
    s = run_study(
        write_db(tmp_path / "db", {"patients": [patient(1, birth="1940-02-29")]}),
        Params(index_date=index_date),
    )
    assert s.cube.cells["age"].tolist() == [age]


@pytest.mark.parametrize("code", ["428.0", "4280", "428", "402.11"])
def test_a_heart_failure_code_with_or_without_dot_is_a_risk_condition(tmp_path, code):
    t = {"patients": [patient(1)], "diagnoses": [dx(1, code)]}
    assert flags_of(tmp_path, t)["risk_condition"] == 1


@pytest.mark.parametrize("code", ["429.2", "530.81", "272.4", "V58.61"])
def test_codes_outside_the_lists_are_not_risk_conditions(tmp_path, code):
    t = {"patients": [patient(1)], "diagnoses": [dx(1, code)]}
    assert flags_of(tmp_path, t)["risk_condition"] == 0


def test_a_diagnosis_after_the_index_date_is_not_a_history(tmp_path):
    t = {"patients": [patient(1)], "diagnoses": [dx(1, "401.9", date="2016-02-01")]}
    assert flags_of(tmp_path, t)["risk_condition"] == 0


def test_a_diagnosis_before_the_window_is_a_history(tmp_path):
    t = {"patients": [patient(1)], "diagnoses": [dx(1, "401.9", date="1999-02-01")]}
    assert flags_of(tmp_path, t)["risk_condition"] == 1


def test_systemic_not_topical_corticosteroids_are_risk_drugs(tmp_path):
    t = {
        "patients": [patient(1), patient(2)],
        "prescriptions": [rx(1, "H02AB06"), rx(2, "D07AC01")],
    }
    assert flags_of(tmp_path, t)["risk_drug"] == 1


def target_tables(**over):
    p = {"birth": "1935-01-01", **over.pop("patient", {})}
    t = {
        "patients": [patient(1, **p)],
        "pain_episodes": [pain(1), pain(1, date="2013-03-03")],
        "diagnoses": [dx(1, "250.00")],
        "prescriptions": [],
    }
    t.update(over)
    return t


def test_target_needs_pain_recurrence_age_and_a_risk(tmp_path):
    assert flags_of(tmp_path, target_tables())["target"] == 1


def test_target_through_a_risk_drug_only(tmp_path):
    t = target_tables(diagnoses=[], prescriptions=[rx(1, "B01AC06")])
    f = flags_of(tmp_path, t)
    assert f["target"] == 1 and f["pain_risk"] == 0


@pytest.mark.parametrize(
    "change",
    [
        {"diagnoses": []},  # no risk condition, no drug
        {"patient": {"birth": "1941-01-01"}},  # 74
        {"pain_episodes": [pain(1)]},  # a single episode
        {"pain_episodes": [pain(1, severity=3), pain(1, date="2013-03-03", severity=3)]},  # mild
    ],
)
def test_missing_any_criterion_excludes_from_the_target(tmp_path, change):
    assert flags_of(tmp_path, target_tables(**change))["target"] == 0


def test_definitions_follow_the_parameters(tmp_path):
    t = target_tables(
        pain_episodes=[pain(1, site="shoulder"), pain(1, date="2013-03-03", site="shoulder")]
    )
    assert flags_of(tmp_path, t)["target"] == 0
    assert flags_of(tmp_path, t, pain_sites=["shoulder"])["target"] == 1
    assert flags_of(tmp_path, target_tables(), elderly_age=85)["target"] == 0
    assert flags_of(tmp_path, target_tables(), min_episodes=3)["target"] == 0


def test_attrition_table(tmp_path, default_db):
    a = run_study(default_db).attrition().set_index("step")
    P = PUB  # data/reference/published.csv
    assert a.loc["all_patients", "n"] == P["population.n"]
    assert a.loc["pain", "n"] == P["pain.n"]
    assert round(a.loc["pain", "pct_of_all"], 2) == P["pain.pct_of_population"]
    assert a.loc["pain_risk_condition", "n"] == P["pain_risk.n"]
    assert round(a.loc["pain_risk_condition", "pct_of_previous"], 1) == P["pain_risk.pct_of_pain"]
    # the target is drawn from the pain cohort (risk condition or risk drug), as in P9
    assert a.loc["target", "previous_step"] == "pain"
    assert round(a.loc["target", "pct_of_previous"], 2) == P["target.pct_of_pain"]
    assert a.loc["candidates", "n"] == pytest.approx(60.5)
    assert a.loc["candidates", "pct_of_previous"] == pytest.approx(50.0)


def test_events_outside_registration_count_unless_left_out(tmp_path):
    """The paper's query counts an event whatever its date against the registration;
    ``events_outside_registration: leave_out`` counts only events within it. Patient 1 left
    the practice at the end of 2011: her second knee episode (2013), her hypertension
    (diagnosed 2012) and her antithrombotic (2014) are outside her registration."""
    db = write_db(
        tmp_path / "db",
        {
            "patients": [
                patient(1, birth="1930-01-01", registered_to="2011-12-31"),
                patient(2, birth="1931-01-01"),
            ],
            "pain_episodes": [
                pain(1, "2010-05-01"),
                pain(1, "2013-05-01"),
                pain(2),
                pain(2, "2014-01-01"),
            ],
            "diagnoses": [dx(1, "401.9", "2012-06-01"), dx(2, "401.9")],
            "prescriptions": [rx(1, "B01AC06", "2014-01-01")],
        },
        synthetic=True,
    )
    counted = run_study(db, Params(disclosure="off"))
    left_out = run_study(db, Params(disclosure="off", events_outside_registration="leave_out"))
    f, g = counted.cube.flag_arrays(), left_out.cube.flag_arrays()
    # counted: both are recurrent, elderly and at risk; left out: patient 1 has one episode
    # in her registration and no risk condition or drug dated within it
    assert counted.cube.count(f["target"]) == 2 and left_out.cube.count(g["target"]) == 1
    assert counted.cube.count(f["pain_risk"]) == 2 and left_out.cube.count(g["pain_risk"]) == 1
    assert counted.cube.count(f["pain"]) == left_out.cube.count(g["pain"]) == 2
