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
    pd.DataFrame(
        {
            "person_id": [1, 2],
            "gender_concept_id": [gender, "8507"],
            "year_of_birth": [1935, 1960],
            "month_of_birth": [3, None],
            "day_of_birth": [4, None],
            "birth_datetime": [None, None],
            "care_site_id": [11, 11],
        }
    ).to_csv(f / "person.csv", index=False)
    pd.DataFrame(
        {
            "person_id": [1, 2, 1],
            "observation_period_start_date": ["1990-01-01", "2000-01-01", "2001-01-01"],
            "observation_period_end_date": ["2000-12-31", "2016-12-31", "2016-12-31"],
        }
    ).to_csv(f / "observation_period.csv", index=False)
    pd.DataFrame(
        {
            "person_id": [1, 2],
            "condition_start_date": ["2005-01-01", "2010-01-01"],
            "condition_source_value": ["I50.0", "K21.0"],
        }
    ).to_csv(f / "condition_occurrence.csv", index=False)
    pd.DataFrame(
        {
            "person_id": [2],
            "drug_exposure_start_date": ["2012-01-01"],
            "drug_source_value": ["N02BE01"],
        }
    ).to_csv(f / "drug_exposure.csv", index=False)
    pd.DataFrame(
        {
            "person_id": [1, 1, 2, 2],
            "observation_date": ["2009-01-01", "2013-01-01", "2010-01-01", "2011-01-01"],
            "observation_source_value": ["72514-3", "72514-3", "72514-3", "8867-4"],
            "value_as_number": [6, 8, 3, 70],
            "qualifier_source_value": ["Knee", "knee", "back", None],
            "value_as_string": ["osteoarticular", "osteoarticular", "osteoarticular", None],
        }
    ).to_csv(f / "observation.csv", index=False)
    return f


def test_omop_tables_become_the_contract(tmp_path):
    report = import_omop(omop_folder(tmp_path), tmp_path / "db", code_system="icd10")
    assert report["tables"] == {
        "patients": 2,
        "diagnoses": 2,
        "prescriptions": 1,
        "pain_episodes": 3,
    }
    assert report["repairs"]["icd10_unmapped_records"] == 0  # K21 maps to 530.81
    pts = pd.read_parquet(tmp_path / "db" / "patients.parquet").set_index("patient_id")
    assert pts.loc[1, "sex"] == "F" and str(pts.loc[1, "birth_date"]) == "1935-03-04"
    assert (
        str(pts.loc[1, "registered_from"]) == "1990-01-01"
        and str(pts.loc[2, "birth_date"]) == "1960-01-01"
    )
    s = run_study(tmp_path / "db", Params(disclosure="off"))
    f = s.cube.flag_arrays()
    # person 1: aged 80, knee pain twice (6 and 8), heart failure I50.0 -> 428.0: the target
    assert s.cube.count(f["target"]) == 1 and s.cube.count(f["pain"]) == 1


def test_an_unmappable_gender_is_named(tmp_path):
    with pytest.raises(AnalysisError, match="person, column gender_concept_id, row 1"):
        import_omop(omop_folder(tmp_path, gender="0"), tmp_path / "db", code_system="icd9cm")
    assert not (tmp_path / "db").exists()


def test_the_command_line(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis",
            "import",
            "--omop",
            str(omop_folder(tmp_path)),
            "--into",
            str(tmp_path / "db"),
            "--code-system",
            "icd10",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "pain_episodes 3 rows" in r.stdout


def test_an_unrelated_existing_folder_is_not_replaced(tmp_path):
    keep = tmp_path / "db"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    with pytest.raises(AnalysisError, match="holds files this tool did not write"):
        import_omop(omop_folder(tmp_path), keep, code_system="icd9cm")
    assert (keep / "notes.txt").read_text() == "mine"


def test_a_contract_problem_names_the_imported_table_and_nothing_is_kept(tmp_path):
    f = omop_folder(tmp_path)
    obs = pd.read_csv(f / "observation.csv")
    obs.loc[0, "observation_date"] = "1930-01-01"  # before person 1 was born (1935)
    obs.to_csv(f / "observation.csv", index=False)
    with pytest.raises(
        AnalysisError, match="imported pain_episodes.parquet: table pain_episodes"
    ) as e:
        import_omop(f, tmp_path / "db", code_system="icd9cm")
    assert ".tmp-" not in str(e.value) and "order of the OMOP source table" in str(e.value)
    assert not (tmp_path / "db").exists() and not list(tmp_path.glob(".db.tmp-*"))


def synthea_like(tmp_path, vocab_tables=True, upper=True):
    """An OMOP 5.4 export as OHDSI's tools write it (upper-case file names), whose
    conditions are SNOMED CT: streptococcal sore throat (43878008), burn (403190006), type 2
    diabetes (44054006), essential hypertension (59621000) and a descendant of it; with a
    CONCEPT table and, optionally, CONCEPT_RELATIONSHIP / CONCEPT_ANCESTOR."""
    f = tmp_path / "synthea"
    f.mkdir()
    name = (lambda t: t.upper()) if upper else (lambda t: t)
    pd.DataFrame(
        {
            "person_id": [1, 2, 3],
            "gender_concept_id": ["8532", "8507", "8532"],
            "year_of_birth": [1935, 1936, 1937],
            "month_of_birth": [1, 1, 1],
            "day_of_birth": [1, 1, 1],
            "birth_datetime": [None] * 3,
            "care_site_id": [1, 1, 1],
        }
    ).to_csv(f / f"{name('person')}.csv", index=False)
    pd.DataFrame(
        {
            "person_id": [1, 2, 3],
            "observation_period_start_date": ["1990-01-01"] * 3,
            "observation_period_end_date": ["2016-12-31"] * 3,
        }
    ).to_csv(f / f"{name('observation_period')}.csv", index=False)
    # concept ids (OMOP's, not SNOMED codes) and SNOMED codes as source values
    conds = [
        (1, 28060, "43878008"),
        (1, 4199906, "403190006"),
        (2, 201826, "44054006"),
        (3, 320128, "59621000"),
        (2, 9999001, "1201005"),
    ]
    pd.DataFrame(
        {
            "person_id": [c[0] for c in conds],
            "condition_start_date": ["2005-01-01"] * len(conds),
            "condition_concept_id": [c[1] for c in conds],
            "condition_source_value": [c[2] for c in conds],
            "condition_source_concept_id": [c[1] for c in conds],
        }
    ).to_csv(f / f"{name('condition_occurrence')}.csv", index=False)
    pd.DataFrame(
        {
            "person_id": [1],
            "drug_exposure_start_date": ["2012-01-01"],
            "drug_source_value": ["N02BE01"],
        }
    ).to_csv(f / f"{name('drug_exposure')}.csv", index=False)
    pd.DataFrame(
        {
            "person_id": [1],
            "observation_date": ["2010-01-01"],
            "observation_source_value": ["72514-3"],
            "value_as_number": [6],
            "qualifier_source_value": ["knee"],
            "value_as_string": ["osteoarticular"],
        }
    ).to_csv(f / f"{name('observation')}.csv", index=False)
    concepts = [
        (28060, "SNOMED", "43878008"),
        (4199906, "SNOMED", "403190006"),
        (201826, "SNOMED", "44054006"),
        (320128, "SNOMED", "59621000"),
        (9999001, "SNOMED", "1201005"),
        (44821949, "ICD9CM", "401.9"),
        (44836914, "ICD9CM", "250.00"),
    ]
    pd.DataFrame(
        {
            "concept_id": [c[0] for c in concepts],
            "vocabulary_id": [c[1] for c in concepts],
            "concept_code": [c[2] for c in concepts],
        }
    ).to_csv(f / f"{name('concept')}.csv", index=False)
    if vocab_tables:
        # ICD-9-CM 401.9 maps to essential hypertension; 250.00 to type 2 diabetes
        pd.DataFrame(
            {
                "concept_id_1": [44821949, 44836914],
                "concept_id_2": [320128, 201826],
                "relationship_id": ["Maps to", "Maps to"],
            }
        ).to_csv(f / f"{name('concept_relationship')}.csv", index=False)
        # 9999001 (a kind of essential hypertension) descends from 320128
        pd.DataFrame(
            {
                "ancestor_concept_id": [320128, 9999001],
                "descendant_concept_id": [9999001, 9999001],
                "min_levels_of_separation": [1, 0],
            }
        ).to_csv(f / f"{name('concept_ancestor')}.csv", index=False)
    return f


def risk_groups(db):
    """Which risk-condition lists each patient matches, read with pandas and the lists."""
    from analysis.codelists import load_codelist

    dx = pd.read_parquet(db / "diagnoses.parquet")
    out = {}
    for name in Params().risk_conditions:
        cl = load_codelist(name)
        out[name] = sorted(dx.loc[dx["code"].map(cl.matches), "patient_id"].unique().tolist())
    return out


def test_snomed_codes_are_never_read_as_icd9(tmp_path):
    """The finding: SNOMED 43878008 (sore throat) read as ICD-9-CM 438 (cerebrovascular),
    403190006 (burn) as 403 (hypertensive kidney disease), 44054006 (diabetes) as 440."""
    report = import_omop(synthea_like(tmp_path), tmp_path / "db")
    assert report["diagnoses_by_vocabulary"] == {"SNOMED": 5}
    g = risk_groups(tmp_path / "db")
    assert g["risk_condition_cardiovascular_disease"] == []  # neither the sore throat nor diabetes
    assert g["risk_condition_hypertension"] == [
        2,
        3,
    ]  # 59621000 and its descendant, through "Maps to"
    assert g["risk_condition_diabetes_mellitus"] == [2]
    assert report["unmapped_diagnoses"] == {"SNOMED": 2}  # the sore throat and the burn: no mapping
    meta = __import__("json").loads((tmp_path / "db" / "dataset.json").read_text())
    assert meta["diagnosis_vocabulary"] == "ICD9CM" and meta["unmapped_diagnoses"] == {"SNOMED": 2}


def test_without_vocabulary_tables_snomed_is_counted_and_said(tmp_path, capfd):
    from analysis.cli import main

    assert (
        main(
            [
                "import",
                "--omop",
                str(synthea_like(tmp_path, vocab_tables=False)),
                "--into",
                str(tmp_path / "db"),
            ]
        )
        == 0
    )
    err = capfd.readouterr().err
    assert "5 SNOMED diagnosis record(s) could not be mapped" in err and "see none of those" in err
    assert pd.read_parquet(tmp_path / "db" / "diagnoses.parquet").empty
    assert main(["figures", "--data", str(tmp_path / "db")]) == 0
    assert "see none of those diagnoses" in capfd.readouterr().err


def test_without_a_concept_table_the_vocabulary_must_be_given(tmp_path):
    f = synthea_like(tmp_path, upper=False)
    (f / "concept.csv").unlink()
    with pytest.raises(AnalysisError, match="no CONCEPT table.*--code-system"):
        import_omop(f, tmp_path / "db")
    report = import_omop(f, tmp_path / "db", code_system="snomed")
    assert report["unmapped_diagnoses"] == {"SNOMED": 5}


def test_omop_tables_are_found_in_a_duckdb_file(tmp_path):
    import duckdb

    src = synthea_like(tmp_path)
    con = duckdb.connect(str(tmp_path / "export.duckdb"))
    con.execute("CREATE SCHEMA cdm")
    for p in src.glob("*.csv"):
        con.execute(
            f"CREATE TABLE cdm.{p.stem} AS SELECT * FROM read_csv('{p}', header=true, "
            f"all_varchar=true)"
        )
    con.close()
    report = import_omop(tmp_path / "export.duckdb", tmp_path / "db")
    assert report["tables"]["patients"] == 3 and report["diagnoses_by_vocabulary"] == {"SNOMED": 5}


def test_a_code_list_matches_only_its_own_vocabulary(tmp_path):
    """A database whose diagnoses are SNOMED: the ICD-9-CM lists match none, and say so."""
    import json

    from conftest import dx, pain, patient, write_db

    db = write_db(
        tmp_path / "sn",
        {
            "patients": [patient(1, birth="1930-01-01")],
            "pain_episodes": [pain(1), pain(1, date="2012-01-01")],
            "diagnoses": [dx(1, "401.9")],
        },
        synthetic=True,
    )
    (db / "dataset.json").write_text(
        json.dumps({"synthetic": True, "diagnosis_vocabulary": "SNOMED"})
    )
    s = run_study(db)
    assert s.cube.count(s.cube.flag_arrays()["risk_condition"]) == 0
    assert any("match none of them" in n for n in s.cube.notes)


@pytest.mark.parametrize(
    "drop", [["birth_datetime"], ["birth_datetime", "month_of_birth", "day_of_birth"]]
)
def test_person_without_the_optional_birth_columns(tmp_path, drop):
    """CDM 5.4: year_of_birth is required; month_of_birth, day_of_birth and birth_datetime
    are optional and an export may leave the columns out (it crashed with BinderException).
    The date is built from what there is: month and day 1 where missing, and counted."""
    f = omop_folder(tmp_path)
    person = pd.read_csv(f / "person.csv").drop(columns=drop)
    person.to_csv(f / "person.csv", index=False)
    report = import_omop(f, tmp_path / "db", code_system="icd10")
    pts = pd.read_parquet(tmp_path / "db" / "patients.parquet").set_index("patient_id")
    expected = "1935-03-04" if "month_of_birth" not in drop else "1935-01-01"
    assert str(pts.loc[1, "birth_date"]) == expected
    assert str(pts.loc[2, "birth_date"]) == "1960-01-01"
    assert report["repairs"]["birth_date_from_year_only"] == (1 if len(drop) == 1 else 2)
