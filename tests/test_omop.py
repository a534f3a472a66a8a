"""An OMOP CDM extract read into the contract, by the documented mapping."""

import subprocess
import sys

import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.omop import import_omop
from analysis.params import Params
from analysis.study import run_study


def omop_folder(tmp_path, gender="8532"):
    f = tmp_path / "omop"
    f.mkdir()
    pd.DataFrame({"person_id": [1, 2], "gender_concept_id": [gender, "8507"], "year_of_birth": [1935, 1960],
                  "month_of_birth": [3, None], "day_of_birth": [4, None], "birth_datetime": [None, None],
                  "care_site_id": [11, 11]}).to_csv(f / "person.csv", index=False)
    pd.DataFrame({"person_id": [1, 2, 1], "observation_period_start_date": ["1990-01-01", "2000-01-01", "2001-01-01"],
                  "observation_period_end_date": ["2000-12-31", "2016-12-31", "2016-12-31"]}).to_csv(
        f / "observation_period.csv", index=False)
    pd.DataFrame({"person_id": [1, 2], "condition_start_date": ["2005-01-01", "2010-01-01"],
                  "condition_source_value": ["I50.0", "K21.0"]}).to_csv(f / "condition_occurrence.csv", index=False)
    pd.DataFrame({"person_id": [2], "drug_exposure_start_date": ["2012-01-01"],
                  "drug_source_value": ["N02BE01"]}).to_csv(f / "drug_exposure.csv", index=False)
    pd.DataFrame({"person_id": [1, 1, 2, 2], "observation_date": ["2009-01-01", "2013-01-01", "2010-01-01", "2011-01-01"],
                  "observation_source_value": ["72514-3", "72514-3", "72514-3", "8867-4"],
                  "value_as_number": [6, 8, 3, 70], "qualifier_source_value": ["Knee", "knee", "back", None],
                  "value_as_string": ["osteoarticular", "osteoarticular", "osteoarticular", None]}).to_csv(
        f / "observation.csv", index=False)
    return f


def test_omop_tables_become_the_contract(tmp_path):
    report = import_omop(omop_folder(tmp_path), tmp_path / "db", code_system="icd10")
    assert report["tables"] == {"patients": 2, "diagnoses": 2, "prescriptions": 1, "pain_episodes": 3}
    assert report["repairs"]["icd10_unmapped_records"] == 0  # K21 maps to 530.81
    pts = pd.read_parquet(tmp_path / "db" / "patients.parquet").set_index("patient_id")
    assert pts.loc[1, "sex"] == "F" and str(pts.loc[1, "birth_date"]) == "1935-03-04"
    assert str(pts.loc[1, "registered_from"]) == "1990-01-01" and str(pts.loc[2, "birth_date"]) == "1960-01-01"
    s = run_study(tmp_path / "db", Params(disclosure="off"))
    f = s.cube.flag_arrays()
    # person 1: aged 80, knee pain twice (6 and 8), heart failure I50.0 -> 428.0: the target
    assert s.cube.count(f["target"]) == 1 and s.cube.count(f["pain"]) == 1


def test_an_unmappable_gender_is_named(tmp_path):
    with pytest.raises(AnalysisError, match="person, column gender_concept_id, row 1"):
        import_omop(omop_folder(tmp_path, gender="0"), tmp_path / "db")
    assert not (tmp_path / "db").exists()


def test_the_command_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "analysis", "import", "--omop", str(omop_folder(tmp_path)),
                        "--into", str(tmp_path / "db"), "--code-system", "icd10"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "pain_episodes 3 rows" in r.stdout


def test_an_unrelated_existing_folder_is_not_replaced(tmp_path):
    keep = tmp_path / "db"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    with pytest.raises(AnalysisError, match="holds files this tool did not write"):
        import_omop(omop_folder(tmp_path), keep)
    assert (keep / "notes.txt").read_text() == "mine"


def test_a_contract_problem_names_the_imported_table_and_nothing_is_kept(tmp_path):
    f = omop_folder(tmp_path)
    obs = pd.read_csv(f / "observation.csv")
    obs.loc[0, "observation_date"] = "1930-01-01"  # before person 1 was born (1935)
    obs.to_csv(f / "observation.csv", index=False)
    with pytest.raises(AnalysisError, match="imported pain_episodes.parquet: table pain_episodes") as e:
        import_omop(f, tmp_path / "db")
    assert ".tmp-" not in str(e.value) and "order of the OMOP source table" in str(e.value)
    assert not (tmp_path / "db").exists() and not list(tmp_path.glob(".db.tmp-*"))
