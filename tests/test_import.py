"""Importing a messy extract: any column names, Italian dates and sex codes, ICD-10,
semicolons, Latin-1, Excel; and every kind of bad extract refused by file, column, row."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.importer import import_extract
from analysis.params import Params
from analysis.study import run_study

MAPPING = """
extract_date: 2016-01-31
code_system: icd10
tables:
  patients:
    files: [anagrafica.csv]
    csv: {delimiter: ";", encoding: latin-1}
    columns:
      patient_id: ID_PAZ
      sex: SESSO
      birth_date: DATA_NASCITA
      registered_from: DATA_ISCR
      registered_to: DATA_REVOCA
    constants: {practice_id: P07}
    date_format: "%d/%m/%Y"
  diagnoses:
    files: [diagnosi.xlsx]
    columns: {patient_id: ID_PAZ, date: DATA, code: ICD10}
  pain_episodes:
    files: [dolore_2010.csv, dolore_2014.csv]
    columns: {patient_id: PAZ, date: QUANDO, site: SEDE, severity: NRS, cause: CAUSA}
    values:
      site: {anca: hip, collo: neck, schiena: back, ginocchio: knee, spalla: shoulder}
      cause: {osteoarticolare: osteoarticular, traumatica: traumatic}
  prescriptions:
    files: [farmaci.parquet]
    columns: {patient_id: paz_id, date: data_prescr, atc_code: atc}
"""


def make_extract(folder, **overrides):
    folder.mkdir(parents=True, exist_ok=True)
    pats = overrides.get(
        "patients",
        "ID_PAZ;SESSO;DATA_NASCITA;DATA_ISCR;DATA_REVOCA\n"
        "101;2;15/06/1938;01/01/1990;\n102;1;01/03/1950;01/01/1990;\n"
        "103;F;20/12/1980;05/05/2005;31/12/2014\n104;maschio;02/02/1939;01/01/1995;\n",
    )
    (folder / "anagrafica.csv").write_bytes(pats.encode("latin-1"))
    dx = overrides.get(
        "diagnoses",
        pd.DataFrame(
            {
                "ID_PAZ": ["101", "102", "104", "104"],
                "DATA": ["2008-03-01", "2010-01-01", "2001-01-01", "2012-05-05"],
                "ICD10": ["I10", "E11.9", "I50.0", "Z99.9"],
            }
        ),
    )
    dx.to_excel(folder / "diagnosi.xlsx", index=False)
    (folder / "dolore_2010.csv").write_text(
        overrides.get(
            "pain1",
            "PAZ,QUANDO,SEDE,NRS,CAUSA\n101,2010-04-01,ginocchio,6,osteoarticolare\n"
            "104,2010-05-01,schiena,7,osteoarticolare\n102,2010-06-01,spalla,8,traumatica\n",
        )
    )
    (folder / "dolore_2014.csv").write_text(
        overrides.get(
            "pain2",
            "PAZ,QUANDO,SEDE,NRS,CAUSA\n101,2014-04-01,anca,5,osteoarticolare\n"
            "104,2014-09-09,schiena,9,osteoarticolare\n",
        )
    )
    pd.DataFrame({"paz_id": [104], "data_prescr": ["2013-01-01"], "atc": ["B01AC06"]}).to_parquet(
        folder / "farmaci.parquet"
    )
    (folder / "mapping.yaml").write_text(overrides.get("mapping", MAPPING))
    return folder / "mapping.yaml"


def test_a_messy_extract_becomes_the_contract(tmp_path):
    mapping = make_extract(tmp_path / "extract")
    report = import_extract(mapping, tmp_path / "db")
    assert report["tables"] == {
        "patients": 4,
        "diagnoses": 3,
        "pain_episodes": 5,
        "prescriptions": 1,
    }
    assert report["repairs"]["sex_recoded"] == 3
    assert report["repairs"]["icd10_unmapped_records"] == 1
    unmapped = pd.read_csv(tmp_path / "db" / "unmapped_codes.csv")
    assert unmapped.to_dict("records") == [{"icd10_code": "Z99.9", "records": 1}]
    pts = pd.read_parquet(tmp_path / "db" / "patients.parquet")
    assert pts["sex"].tolist() == ["F", "M", "F", "M"] and set(pts["practice_id"]) == {"P07"}
    dx = pd.read_parquet(tmp_path / "db" / "diagnoses.parquet")
    assert sorted(dx["code"]) == ["250.00", "401.9", "428.0"]
    meta = json.loads((tmp_path / "db" / "dataset.json").read_text())
    assert meta["synthetic"] is False and meta["extract_date"] == "2016-01-31"
    s = run_study(tmp_path / "db", Params(disclosure="off"))
    f = s.cube.flag_arrays()
    # 101: aged 77, knee 2010 + hip 2014, hypertension I10 -> 401.9
    # 104: aged 76, back pain twice, heart failure I50 -> 428.0 and an antithrombotic
    # 102: shoulder pain of traumatic cause only; 103: no pain
    assert s.cube.count(f["target"]) == 2 and s.cube.count(f["pain"]) == 2


def test_the_command_line(tmp_path):
    mapping = make_extract(tmp_path / "extract")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis",
            "import",
            "--mapping",
            str(mapping),
            "--into",
            str(tmp_path / "db"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "patients 4 rows" in r.stdout and "unmapped_codes.csv" in r.stdout


def refused(tmp_path, *fragments, **overrides):
    mapping = make_extract(tmp_path / "extract", **overrides)
    with pytest.raises(AnalysisError) as e:
        import_extract(mapping, tmp_path / "db")
    for f in fragments:
        assert f in str(e.value), str(e.value)
    assert not (tmp_path / "db").exists() and not list(tmp_path.glob(".db.tmp-*"))
    return str(e.value)


def test_an_unknown_sex_code_names_file_column_row(tmp_path):
    refused(
        tmp_path,
        "anagrafica.csv",
        "column SESSO",
        "row 2",
        "'X'",
        patients="ID_PAZ;SESSO;DATA_NASCITA;DATA_ISCR;DATA_REVOCA\n101;2;15/06/1938;01/01/1990;\n102;X;01/03/1950;01/01/1990;\n",
    )


def test_a_date_in_another_format_names_file_column_row(tmp_path):
    refused(
        tmp_path,
        "anagrafica.csv",
        "column DATA_NASCITA",
        "row 1",
        "1938-06-15",
        patients="ID_PAZ;SESSO;DATA_NASCITA;DATA_ISCR;DATA_REVOCA\n101;2;1938-06-15;01/01/1990;\n",
    )


def test_a_missing_source_column_is_named_with_a_hint(tmp_path):
    refused(
        tmp_path,
        "dolore_2010.csv",
        "'NRS'",
        "did you mean",
        pain1="PAZ,QUANDO,SEDE,NRSS,CAUSA\n101,2010-04-01,ginocchio,6,osteoarticolare\n",
    )


def test_a_value_outside_the_vocabulary_names_file_column_row(tmp_path):
    refused(
        tmp_path,
        "dolore_2010.csv",
        "column SEDE",
        "row 1",
        "'gomito'",
        pain1="PAZ,QUANDO,SEDE,NRS,CAUSA\n101,2010-04-01,gomito,6,osteoarticolare\n",
    )


def test_duplicate_ids_are_refused(tmp_path):
    refused(
        tmp_path,
        "unique",
        patients="ID_PAZ;SESSO;DATA_NASCITA;DATA_ISCR;DATA_REVOCA\n101;2;15/06/1938;01/01/1990;\n101;1;01/03/1950;01/01/1990;\n",
    )


def test_a_wrong_encoding_is_explained(tmp_path):
    mapping = make_extract(tmp_path / "extract")
    (tmp_path / "extract" / "dolore_2010.csv").write_bytes(
        "PAZ,QUANDO,SEDE,NRS,CAUSA\n101,2010-04-01,ginocchio,6,osteoarticolare\u00e0\n".encode(
            "latin-1"
        )
    )
    with pytest.raises(AnalysisError, match="not UTF-8.*encoding"):
        import_extract(mapping, tmp_path / "db")


def test_an_empty_file(tmp_path):
    mapping = make_extract(tmp_path / "extract")
    (tmp_path / "extract" / "dolore_2014.csv").write_text("")
    with pytest.raises(AnalysisError, match="dolore_2014.csv is empty"):
        import_extract(mapping, tmp_path / "db")


@pytest.mark.parametrize("nrs", ["11", "5.5", "severe"])
def test_a_severity_outside_0_to_10(tmp_path, nrs):
    refused(
        tmp_path,
        "dolore_2010.csv",
        "column NRS",
        "row 1",
        "integer 0-10",
        pain1=f"PAZ,QUANDO,SEDE,NRS,CAUSA\n101,2010-04-01,anca,{nrs},osteoarticolare\n",
    )


def test_a_huge_field_does_not_crash(tmp_path):
    refused(
        tmp_path,
        "column SEDE",
        "...'",
        pain1="PAZ,QUANDO,SEDE,NRS,CAUSA\n101,2010-04-01," + "x" * 200_000 + ",6,osteoarticolare\n",
    )


@pytest.mark.parametrize(
    "bad,fragment",
    [
        (MAPPING.replace("pain_episodes:", "pain_episode:"), "did you mean 'pain_episodes'"),
        (MAPPING.replace("code_system: icd10", "code_system: snomed"), "code_system"),
        (MAPPING.replace("atc_code: atc", "atc: atc"), "'atc' is not a column"),
        (MAPPING.replace("date_format:", "date_fromat:"), "did you mean 'date_format'"),
        ("tables: [1, 2]", "'tables' must map"),
        ("tables: {patients: {columns: {}}}", "needs 'files'"),
    ],
)
def test_mapping_file_errors(tmp_path, bad, fragment):
    refused(tmp_path, fragment, mapping=bad)


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    row=st.integers(0, 2),
    col=st.integers(0, 4),
    value=st.one_of(
        st.text(max_size=12), st.sampled_from(["", ";", '"', "1e9", "-1", "31/02/2010", "\u00e8"])
    ),
)
def test_any_corrupted_cell_gives_a_result_or_a_clear_error(tmp_path_factory, row, col, value):
    """Property: one corrupted cell of the pain extract either imports (a documented repair)
    or stops with an AnalysisError; never another exception, never a partial output."""
    tmp = tmp_path_factory.mktemp("prop")
    lines = [
        "PAZ,QUANDO,SEDE,NRS,CAUSA",
        "101,2010-04-01,ginocchio,6,osteoarticolare",
        "104,2010-05-01,schiena,7,osteoarticolare",
        "102,2010-06-01,spalla,8,traumatica",
    ]
    cells = lines[row + 1].split(",")
    cells[col] = '"' + value.replace('"', '""') + '"'
    lines[row + 1] = ",".join(cells)
    mapping = make_extract(tmp / "extract", pain1="\n".join(lines) + "\n")
    try:
        import_extract(mapping, tmp / "db")
        assert (tmp / "db" / "dataset.json").exists()
    except AnalysisError as exc:
        assert "row" in str(exc) or "could not be read" in str(exc) or "not UTF-8" in str(exc)
        assert not (tmp / "db").exists()
    assert not list(tmp.glob(".db.tmp-*"))


# ----------------------------------------------------------------------------- dates
US_PAIN2 = "PAZ,QUANDO,SEDE,NRS,CAUSA\n101,04/01/2014,anca,5,osteoarticolare\n"
US_PAIN = (
    "PAZ,QUANDO,SEDE,NRS,CAUSA\n101,05/08/2012,ginocchio,6,osteoarticolare\n"
    "104,06/09/2013,schiena,7,osteoarticolare\n102,01/02/2011,spalla,8,traumatica\n"
)


def test_dates_that_read_two_ways_are_refused_not_guessed(tmp_path):
    """A US export (05/08/2012 is 8 May) was read value by value with the first format
    that parsed (5 August); a column is now read with one format or not at all: where
    two formats read every value differently, the import names the table, column, values
    and the date_format to set."""
    msg = refused(
        tmp_path,
        "pain_episodes.date (source column QUANDO)",
        "%d/%m/%Y or as %m/%d/%Y",
        "'01/02/2011'",
        'date_format: "%m/%d/%Y"',
        pain1=US_PAIN,
        pain2=US_PAIN2,
    )
    assert "does not guess" in msg


def test_a_column_with_one_day_above_12_is_read_with_the_one_format_that_fits(tmp_path):
    """13/08/2012 can only be day/month: then every value of the column is read so (and
    05/08/2012 is 5 August, as the column's own format says)."""
    mapping = make_extract(
        tmp_path / "extract", pain1=US_PAIN.replace("06/09/2013", "13/09/2013"), pain2=US_PAIN2
    )
    report = import_extract(mapping, tmp_path / "db")
    assert report["codings"]["pain_episodes.date"] == [
        {"source": "dates written %d/%m/%Y", "read_as": "date", "rows": 4}
    ]
    pain = pd.read_parquet(tmp_path / "db" / "pain_episodes.parquet")
    assert "2012-08-05" in pain["date"].astype(str).tolist()


def test_a_column_mixing_us_and_european_dates_is_refused_row_by_row(tmp_path):
    """13/08/2012 (day first) and 08/13/2012 (month first) in one column: no one format
    reads them all; the rows the best format does not read are listed."""
    mixed = US_PAIN.replace("06/09/2013", "13/09/2013").replace("01/02/2011", "02/13/2011")
    msg = refused(
        tmp_path, "no one date format reads every value", "row 3", pain1=mixed, pain2=US_PAIN2
    )
    assert "'02/13/2011'" in msg


def test_the_methods_say_how_codes_were_mapped_and_what_was_left_out(tmp_path):
    """A reviewer asks how ICD-10 was mapped and how many records could not be: the import
    records the mapping file with its digest and the counts, and the methods say them."""
    import hashlib

    from analysis import paths
    from analysis.methods import methods_text

    mapping = make_extract(tmp_path / "extract")
    import_extract(mapping, tmp_path / "db")
    meta = json.loads((tmp_path / "db" / "dataset.json").read_text())
    table = paths.DATA / "mappings" / "icd10_to_icd9cm.csv"
    assert meta["code_mapping"] == {
        "from": "ICD10",
        "to": "ICD9CM",
        "file": "icd10_to_icd9cm.csv",
        "sha256": hashlib.sha256(table.read_bytes()).hexdigest(),
        "mapped_records": 3,  # I10, E11.9, I50.0
        "unmapped_records": 1,  # Z99.9
    }
    assert meta["unmapped_diagnoses"] == {"ICD10": 1}
    study = run_study(tmp_path / "db", Params(disclosure="off"))
    text = str(methods_text(study.params, study))
    assert "mapped to ICD9CM by the longest matching code prefix in `icd10_to_icd9cm.csv`" in text
    assert meta["code_mapping"]["sha256"][:16] in text
    assert "could not be mapped were left out (1 of ICD10)" in text


@pytest.mark.parametrize("sheet", ['"Diagnosi"', "3"])
def test_a_wrong_sheet_lists_the_sheets(tmp_path, sheet):
    """The wrong-column error lists the columns; the wrong-sheet error lists the sheets."""
    refused(
        tmp_path,
        "diagnosi.xlsx",
        f"no sheet {sheet.strip(chr(34))!r}".replace("'3'", "3"),
        "its sheets: 'Sheet1'",
        mapping=MAPPING.replace(
            "files: [diagnosi.xlsx]", f"files: [diagnosi.xlsx]\n    sheet: {sheet}"
        ),
    )


def test_a_wide_file_is_named_wide_with_how_to_reshape_it(tmp_path):
    """A diagnoses file with one row per patient and a date and code column per condition
    (HTN_date, HTN_code, DM_date, DM_code) is refused as wide, once, with how to reshape
    it, not as hundreds of "expected a value (it is empty)" lines."""
    wide = pd.DataFrame(
        {
            "ID_PAZ": ["101", "102", "104"],
            "HTN_date": ["2008-03-01", None, "2001-01-01"],
            "HTN_code": ["I10", None, "I10"],
            "DM_date": [None, "2010-01-01", None],
            "DM_code": [None, "E11.9", None],
        }
    )
    message = refused(
        tmp_path,
        "diagnosi.xlsx",
        "looks wide",
        "dm, htn",
        "one row per event",
        "melt",
        diagnoses=wide,
        mapping=MAPPING.replace(
            "columns: {patient_id: ID_PAZ, date: DATA, code: ICD10}",
            "columns: {patient_id: ID_PAZ, date: HTN_date, code: HTN_code}",
        ),
    )
    assert message.count("\n") < 5
