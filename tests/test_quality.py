"""The data-quality report, on a hand-made database where every count is known."""

from analysis.data import open_database
from analysis.params import Params
from analysis.quality import code_coverage, completeness, duplicates, plausibility, unmatched_codes
from conftest import dx, pain, patient, rx, write_db


def db_with_known_problems(tmp_path):
    t = {
        "patients": [
            patient(1, registered_from="2009-01-01"),
            patient(2, registered_to="2012-12-31"),
            patient(3, birth="1905-01-01"),
        ],
        "diagnoses": [
            dx(1, "401.9", date="2008-01-01"),  # before registration
            dx(2, "401.9", date="2013-06-01"),  # after registration ended
            dx(2, "401.9", date="2013-06-01"),  # exact duplicate
            dx(3, "999.9", date="2010-01-01"),
        ],  # in no code list
        "pain_episodes": [pain(1, date="2016-03-01"), pain(2, severity=0)],  # after the index date
        "prescriptions": [rx(3, "B01AC06")],
    }
    return open_database(write_db(tmp_path / "db", t))


def test_counts_of_each_quality_problem(tmp_path):
    db = db_with_known_problems(tmp_path)
    p = plausibility(db, Params()).set_index(["table", "check"])["records"]
    assert p[("patients", "aged over 105 at the index date")] == 1
    assert p[("diagnoses", "before the patient's registration")] == 1
    assert p[("diagnoses", "after the patient's registration ended")] == 2
    assert p[("pain_episodes", "after the index date (ignored by the definitions)")] == 1
    assert p[("pain_episodes", "severity 0 (no pain recorded as an episode)")] == 1
    d = duplicates(db).set_index("table")["exact_duplicates"]
    assert d["diagnoses"] == 1 and d["pain_episodes"] == 0
    c = completeness(db).set_index(["table", "column"])
    assert c.loc[("patients", "registered_to"), "with_value"] == 1
    assert round(c.loc[("patients", "registered_to"), "pct_complete"], 2) == 33.33
    cov = code_coverage(db, Params()).set_index(["table", "covered_by"])
    assert cov.loc[("diagnoses", "the lists the analysis uses"), "matched"] == 3
    assert cov.loc[("prescriptions", "the lists the analysis uses"), "matched"] == 1
    assert unmatched_codes(db).to_dict("records") == [
        {"code": "999.9", "patients": 1, "records": 1}
    ]
    pats = plausibility(db, Params()).set_index(["table", "check"])["patients"]
    # two records, one patient (patient 2); disclosure control counts the patient
    assert pats[("diagnoses", "after the patient's registration ended")] == 1
    assert duplicates(db).set_index("table").loc["diagnoses", "patients"] == 1
