"""Loading refuses bad input before anything is computed, naming file, column and row."""

import json
import subprocess
import sys

import pytest

from analysis.data import open_database
from analysis.errors import AnalysisError
from analysis.params import Params
from conftest import dx, pain, patient, run_cli, rx, write_db


def good_tables():
    return {
        "patients": [patient(1), patient(2, sex="M", birth="1940-01-01")],
        "diagnoses": [dx(1, "401.9")],
        "pain_episodes": [pain(1), pain(2, date="2011-01-01")],
        "prescriptions": [rx(2, "B01AC06")],
    }


def test_a_good_database_opens(tmp_path):
    db = open_database(write_db(tmp_path / "db", good_tables()))
    assert db.con.execute("SELECT count(*) FROM patients").fetchone()[0] == 2
    assert not db.is_synthetic


def refused(tmp_path, tables, *fragments):
    folder = write_db(tmp_path / "db", tables)
    with pytest.raises(AnalysisError) as e:
        open_database(folder)
    msg = str(e.value)
    for f in fragments:
        assert f in msg, msg
    return msg


def test_bad_sex_names_table_column_row(tmp_path):
    t = good_tables()
    t["patients"][1]["sex"] = "X"
    refused(tmp_path, t, "patients.csv", "column sex", "row 2", "F or M", "'X'")


def test_unparseable_date(tmp_path):
    t = good_tables()
    t["pain_episodes"][0]["date"] = "31/05/2010"
    refused(tmp_path, t, "pain_episodes.csv", "column date", "row 1", "ISO date")


@pytest.mark.parametrize(
    "dates, says",
    [
        (["31/05/2010", "13/01/2011"], "read as '%d/%m/%Y', e.g. '31/05/2010'"),
        (["05/31/2010", "01/13/2011"], "read as '%m/%d/%Y', e.g. '05/31/2010'"),
        (["05/03/2010", "01/02/2011"], "(they cannot tell which)"),
    ],
)
def test_dates_in_another_format_say_which_and_how_to_convert(tmp_path, dates, says):
    """A column of US or European dates: the error lists the rows (at most 20) and says
    which format the values are in, and how `analysis import` converts them."""
    t = good_tables()
    t["pain_episodes"][0]["date"], t["pain_episodes"][1]["date"] = dates
    msg = refused(tmp_path, t, "column date", says, "analysis import")
    assert ('date_format: "' in msg) == ("cannot tell" not in says)


def test_duplicate_patient_id(tmp_path):
    t = good_tables()
    t["patients"].append(patient(2))
    refused(tmp_path, t, "patients.csv", "column patient_id", "row 3", "unique")


def test_event_of_an_unknown_patient(tmp_path):
    t = good_tables()
    t["diagnoses"].append(dx(99, "250.00"))
    refused(tmp_path, t, "diagnoses.csv", "column patient_id", "row 2", "'99'")


def test_event_before_birth(tmp_path):
    t = good_tables()
    t["prescriptions"].append(rx(1, "N06AB04", date="1949-01-01"))
    refused(tmp_path, t, "prescriptions.csv", "column date", "row 2", "birth date")


def test_event_after_today(tmp_path):
    t = good_tables()
    t["pain_episodes"].append(pain(1, date="2999-01-01"))
    refused(tmp_path, t, "pain_episodes.csv", "column date", "row 3", "not after")


def test_event_after_the_extract_date(tmp_path):
    t = good_tables()
    t["diagnoses"].append(dx(1, "250.00", date="2016-03-01"))
    folder = write_db(tmp_path / "db", t)
    (folder / "dataset.json").write_text(json.dumps({"extract_date": "2016-01-31"}))
    with pytest.raises(AnalysisError, match="2016-01-31"):
        open_database(folder)


def test_events_after_the_index_date_are_accepted(tmp_path):
    t = good_tables()
    t["pain_episodes"].append(pain(1, date="2016-06-01"))
    open_database(write_db(tmp_path / "db", t)).close()


@pytest.mark.parametrize("severity", [11, -1, 4.5, "severe"])
def test_severity_outside_0_to_10(tmp_path, severity):
    t = good_tables()
    t["pain_episodes"][1]["severity"] = severity
    refused(tmp_path, t, "column severity", "row 2", "integer 0-10")


def test_site_and_cause_vocabularies(tmp_path):
    t = good_tables()
    t["pain_episodes"][0]["site"] = "elbow"
    t["pain_episodes"][1]["cause"] = "unknown"
    msg = refused(tmp_path, t, "column site", "column cause")
    assert "2 problem(s)" in msg


def test_missing_column(tmp_path):
    folder = write_db(tmp_path / "db", good_tables())
    (folder / "prescriptions.csv").write_text("patient_id,date\n1,2012-01-01\n")
    with pytest.raises(AnalysisError, match="prescriptions.csv: missing column.*atc_code"):
        open_database(folder)


def test_missing_table_file(tmp_path):
    folder = write_db(tmp_path / "db", good_tables())
    (folder / "diagnoses.csv").unlink()
    with pytest.raises(AnalysisError, match="diagnoses"):
        open_database(folder)


def test_empty_file(tmp_path):
    folder = write_db(tmp_path / "db", good_tables())
    (folder / "diagnoses.csv").write_text("")
    with pytest.raises(AnalysisError, match="diagnoses.csv: the file is empty"):
        open_database(folder)


def test_many_problems_are_capped_with_a_count(tmp_path):
    t = good_tables()
    t["pain_episodes"] = [pain(1, site="elbow") for _ in range(50)]
    msg = refused(tmp_path, t, "and 30 more problem(s)")
    assert msg.count("column site") == 20


def test_missing_data_folder_suggests_synth(tmp_path):
    with pytest.raises(AnalysisError, match="does not exist"):
        open_database(tmp_path / "nowhere")


def test_command_refuses_bad_data_without_traceback_or_stdout(tmp_path):
    t = good_tables()
    t["patients"][0]["birth_date"] = "not a date"
    folder = write_db(tmp_path / "db", t)
    r = run_cli("figures", "--data", str(folder), "--json")
    assert r.returncode != 0
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    assert "patients.csv" in r.stderr and "birth_date" in r.stderr and "row 1" in r.stderr


def test_command_refuses_bad_parameter_values(tmp_path, small_db):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis",
            "figures",
            "--data",
            str(small_db),
            "--set",
            "benefit_fraction=2",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and r.stdout == "" and "benefit_fraction" in r.stderr
    assert "Traceback" not in r.stderr


def test_command_refuses_bad_command_line_values(tmp_path):
    out = tmp_path / "syn"
    r = run_cli("synth", "--patients", "-3", "--out", str(out))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert not out.exists()


def test_a_duckdb_database_file_holding_the_tables(tmp_path, small_db):
    import duckdb

    from analysis.study import run_study

    path = tmp_path / "practice.duckdb"
    con = duckdb.connect(str(path))
    for t in ("patients", "diagnoses", "pain_episodes", "prescriptions"):
        con.execute(
            f"CREATE TABLE {t} AS SELECT * FROM read_parquet('{small_db / (t + '.parquet')}')"
        )
    con.close()
    off = Params(disclosure="off")  # the copies are not marked synthetic
    from_file = {f["id"]: f["value"] for f in run_study(path, off).figures()}
    from_folder = {f["id"]: f["value"] for f in run_study(small_db, off).figures()}
    assert from_file == from_folder


def test_parquet_and_csv_give_the_same_figures(tmp_path, small_db):
    import pandas as pd

    from analysis.study import run_study

    folder = tmp_path / "csv"
    folder.mkdir()
    for t in ("patients", "diagnoses", "pain_episodes", "prescriptions"):
        pd.read_parquet(small_db / f"{t}.parquet").to_csv(folder / f"{t}.csv", index=False)
    off = Params(disclosure="off")  # the copy is not marked synthetic
    a = {f["id"]: f["value"] for f in run_study(folder, off).figures()}
    b = {f["id"]: f["value"] for f in run_study(small_db, off).figures()}
    assert a == b


def test_every_kind_of_problem_is_listed_in_one_run(tmp_path):
    t = good_tables()
    t["pain_episodes"][0]["severity"] = ""  # a value problem
    t["patients"].append(patient(2))  # a duplicate id
    t["diagnoses"].append(dx(77, "250.00"))  # an unknown patient
    msg = refused(tmp_path, t, "column severity", "unique", "'77'")
    assert "4 problem(s)" in msg  # the two rows sharing the id are both listed


def test_a_changed_file_is_validated_again_even_with_its_old_times(tmp_path):
    import os

    folder = write_db(tmp_path / "db", good_tables())
    open_database(folder).close()  # validated and remembered
    f = folder / "patients.csv"
    st = f.stat()
    f.write_text(f.read_text().replace(",F,", ",X,", 1))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(AnalysisError, match="column sex"):
        open_database(folder)


def test_a_file_is_hashed_again_only_when_its_signature_changes(tmp_path):
    import hashlib
    import os
    import time

    from analysis.data import sha256_files

    f = tmp_path / "a.csv"
    f.write_text("patient_id\n1\n")
    memo = tmp_path / "cache" / "digests.json"
    assert sha256_files([f], memo=memo) == {f: hashlib.sha256(b"patient_id\n1\n").hexdigest()}
    entry = json.loads(memo.read_text())[str(f.resolve())]
    # hashed within a second of the file's last change: not trusted yet (as in git)
    stored = {str(f.resolve()): {**entry, "sha256": "remembered"}}
    memo.write_text(json.dumps(stored))
    assert sha256_files([f], memo=memo)[f] != "remembered"
    # recorded two seconds after the last change: the memo answers, the file is not read
    stored = {
        str(f.resolve()): {
            **entry,
            "sha256": "remembered",
            "recorded_ns": entry["signature"][3] + 2_000_000_000,
        }
    }
    memo.write_text(json.dumps(stored))
    assert sha256_files([f], memo=memo) == {f: "remembered"}
    # same size, modification time put back: the change time moved, so it is read again
    time.sleep(0.05)
    st = f.stat()
    f.write_text("patient_id\n2\n")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sha256_files([f], memo=memo) == {f: hashlib.sha256(b"patient_id\n2\n").hexdigest()}
    assert sha256_files([f]) == {f: hashlib.sha256(b"patient_id\n2\n").hexdigest()}  # no memo


@pytest.mark.parametrize(
    "field, value, column",
    [
        ("birth_date", "15/06/1950", "birth_date"),  # the cube's date cast would fail first
        ("sex", "X", "sex"),  # the cube would silently count an unknown sex
    ],
)
def test_the_study_built_while_validating_refuses_bad_data_with_the_validation_message(
    tmp_path, field, value, column
):
    from analysis.study import run_study

    tables = good_tables()
    tables["patients"][0][field] = value
    folder = write_db(tmp_path / "db", tables)
    with pytest.raises(AnalysisError, match=f"column {column}, row 1"):
        run_study(folder, Params())


def test_a_validation_alongside_is_waited_for_and_its_verdict_raised(tmp_path):
    tables = good_tables()
    tables["pain_episodes"][1]["severity"] = 11
    db = open_database(write_db(tmp_path / "db", tables), validate="alongside")
    assert db.pending is not None
    with pytest.raises(AnalysisError, match="column severity"):
        db.check_valid()
    db.close()
    ok = open_database(write_db(tmp_path / "ok", good_tables()), validate="alongside")
    ok.check_valid()
    ok.check_valid()  # once settled, nothing more to wait for
    ok.close()


@pytest.mark.parametrize("memo_text", ["null", "[]", '{"x": {"signature": 1}}', "{not json"])
def test_a_damaged_digest_memo_is_ignored(tmp_path, monkeypatch, memo_text):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ANALYSIS_CACHE", str(cache))
    folder = write_db(tmp_path / "db", good_tables())
    cache.mkdir()
    (cache / "digests.json").write_text(memo_text)
    open_database(folder).close()
    assert isinstance(json.loads((cache / "digests.json").read_text()), dict)


def test_rows_waiting_in_a_duckdb_write_ahead_log_are_validated_again(
    tmp_path, monkeypatch, small_db
):
    import duckdb

    monkeypatch.setenv("ANALYSIS_CACHE", str(tmp_path / "cache"))
    file = tmp_path / "db.duckdb"
    con = duckdb.connect(str(file))
    for t in ("patients", "diagnoses", "pain_episodes", "prescriptions"):
        con.execute(
            f"CREATE TABLE {t} AS SELECT * FROM read_parquet('{small_db / (t + '.parquet')}')"
        )
    con.close()
    open_database(file).close()  # validated and remembered
    con = duckdb.connect(str(file))
    con.execute("PRAGMA disable_checkpoint_on_shutdown")
    con.execute("INSERT INTO diagnoses VALUES (999999, DATE '2005-01-01', '250')")
    con.close()
    assert (tmp_path / "db.duckdb.wal").exists()  # the file's own bytes did not change
    with pytest.raises(AnalysisError, match="the patient_id of a patient"):
        open_database(file)


def test_the_digest_memo_forgets_files_that_are_gone(tmp_path):
    from analysis.data import sha256_files

    memo = tmp_path / "digests.json"
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("1")
    b.write_text("2")
    sha256_files([a, b], memo=memo)
    b.unlink()
    c = tmp_path / "c.csv"
    c.write_text("3")
    sha256_files([c], memo=memo)
    assert set(json.loads(memo.read_text())) == {str(a.resolve()), str(c.resolve())}


def test_the_readme_contract_table_is_the_declaration():
    """data/README.md shows the contract as declared once in analysis.contract."""
    from analysis.contract import markdown_table
    from conftest import ROOT

    assert markdown_table() in (ROOT / "data" / "README.md").read_text()


def test_every_consumer_derives_its_columns_from_the_contract():
    """The generator's Arrow schemas, the PostgreSQL tables of load and the typed views
    have exactly the declared columns, in the declared order."""
    from analysis.contract import SCHEMA, TABLES, arrow_schema, pg_columns
    from analysis.synth import _schemas

    for t in TABLES:
        names = [c.name for c in SCHEMA[t]]
        assert _schemas({})[t].names == names == arrow_schema(t).names
        assert [n for n, _ in pg_columns(t, "BIGINT")] == names


def test_a_registration_ending_before_it_starts_names_the_patient(tmp_path):
    t = good_tables()
    t["patients"][1].update(registered_from="2005-01-01", registered_to="2001-01-01")
    refused(tmp_path, t, "row 2", "registered_from (2005-01-01) of patient 2", "'2001-01-01'")
