"""The fast validation routes (Parquet statistics, array lookup) refuse exactly what the
plain SQL route refuses, with the same message, on typed Parquet files: clean data, every
kind of problem, files without statistics, sparse and out-of-range ids, many row groups."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis import data
from analysis.contract import SCHEMA, TABLES
from analysis.data import validate_fast
from analysis.errors import AnalysisError

D = dt.date.fromisoformat
TYPES = {
    "patient_id": pa.int64(),
    "practice_id": pa.string(),
    "sex": pa.string(),
    "birth_date": pa.date32(),
    "registered_from": pa.date32(),
    "registered_to": pa.date32(),
    "date": pa.date32(),
    "code": pa.string(),
    "site": pa.string(),
    "severity": pa.int32(),
    "cause": pa.string(),
    "atc_code": pa.string(),
}


def base_tables() -> dict[str, list[dict]]:
    patients = [
        {
            "patient_id": i,
            "practice_id": "P01",
            "sex": "F" if i % 2 else "M",
            "birth_date": D("1940-01-01") + dt.timedelta(days=97 * i),
            "registered_from": D("1990-01-01"),
            "registered_to": None,
        }
        for i in range(1, 31)
    ]
    dx = [{"patient_id": i, "date": D("2005-01-01"), "code": "401.9"} for i in range(1, 31, 2)]
    pain = [
        {
            "patient_id": i,
            "date": D("2010-05-01"),
            "site": "knee",
            "severity": 6,
            "cause": "osteoarticular",
        }
        for i in range(1, 31, 3)
    ]
    rx = [
        {"patient_id": i, "date": D("2012-03-01"), "atc_code": "B01AC06"} for i in range(2, 31, 4)
    ]
    return {"patients": patients, "diagnoses": dx, "pain_episodes": pain, "prescriptions": rx}


def write_parquet(folder, tables, *, statistics=True, row_group_size=7, extract_date=None):
    folder.mkdir(parents=True, exist_ok=True)
    for table in TABLES:
        cols = [c.name for c in SCHEMA[table]]
        rows = tables[table]
        arrays = {c: pa.array([r.get(c) for r in rows], type=TYPES[c]) for c in cols}
        pq.write_table(
            pa.table(arrays),
            folder / f"{table}.parquet",
            write_statistics=statistics,
            row_group_size=row_group_size,
        )
    meta = {"synthetic": True}
    if extract_date:
        meta["extract_date"] = extract_date
    (folder / "dataset.json").write_text(json.dumps(meta))
    return folder


def messages(folder) -> tuple[str | None, str | None]:
    """The validation error of the fast route and of the SQL route (None: accepted)."""
    out = []
    for fast in (True, False):
        db = data.open_database(folder, validate=False)
        try:
            data.validate_database(db, fast=fast)
            out.append(None)
        except AnalysisError as exc:
            out.append(str(exc))
        finally:
            db.close()
    return tuple(out)


def lookup_taken(folder) -> bool:
    db = data.open_database(folder, validate=False)
    try:
        types = {t: data._column_types(db, t) for t in TABLES}
        return (
            validate_fast.event_checks(db.con, types, TABLES[1:], dt.date.today(), db.files)
            is not None
        )
    finally:
        db.close()


def test_clean_data_passes_both_routes_and_the_fast_one_is_taken(tmp_path):
    folder = write_parquet(tmp_path / "db", base_tables())
    assert messages(folder) == (None, None)
    assert lookup_taken(folder)


def test_statistics_settle_clean_columns_but_not_a_vocabulary_of_two_values(tmp_path):
    folder = write_parquet(tmp_path / "db", base_tables())
    stats = validate_fast.parquet_column_stats(folder / "patients.parquet")
    cols = {c.name: c for c in SCHEMA["patients"]}
    assert stats["patient_id"].low == 1 and stats["patient_id"].high == 30
    assert stats["registered_to"].nulls == 30
    assert validate_fast.settled_by_stats(cols["patient_id"], "BIGINT", stats["patient_id"])
    assert validate_fast.settled_by_stats(cols["birth_date"], "DATE", stats["birth_date"])
    assert validate_fast.settled_by_stats(cols["practice_id"], "VARCHAR", stats["practice_id"])
    assert not validate_fast.settled_by_stats(cols["sex"], "VARCHAR", stats["sex"])  # F..M
    pain = validate_fast.parquet_column_stats(folder / "pain_episodes.parquet")
    sev = next(c for c in SCHEMA["pain_episodes"] if c.name == "severity")
    assert validate_fast.settled_by_stats(sev, "INTEGER", pain["severity"])
    assert validate_fast.settled_by_stats(sev, "INTEGER", validate_fast.ColumnStats(0, 0, 10))
    assert not validate_fast.settled_by_stats(sev, "INTEGER", validate_fast.ColumnStats(0, 0, 11))
    assert not validate_fast.settled_by_stats(
        sev, "INTEGER", validate_fast.ColumnStats(None, 0, 10)
    )


def _edit(table, index, **changes):
    def apply(t):
        t[table][index].update(changes)

    return apply


def _append(table, row):
    def apply(t):
        t[table].append(row)

    return apply


CASES = {
    "duplicate patient id": (_edit("patients", 4, patient_id=4), "a unique patient_id"),
    "unknown patient inside the id range": (
        lambda t: t["patients"].pop(9),
        "the patient_id of a patient in the patients table",
    ),
    "unknown patient above the range": (
        _append("diagnoses", {"patient_id": 999, "date": D("2001-01-01"), "code": "250"}),
        "the patient_id of a patient",
    ),
    "unknown patient id 0 and negative": (
        lambda t: t["prescriptions"].extend(
            [
                {"patient_id": 0, "date": D("2001-01-01"), "atc_code": "N06AB03"},
                {"patient_id": -3, "date": D("2001-01-01"), "atc_code": "N06AB03"},
            ]
        ),
        "the patient_id of a patient",
    ),
    "event before birth": (
        _edit("pain_episodes", 2, date=D("1930-01-01")),
        "on or after the patient's birth",
    ),
    "event after the extract date": (
        _edit("diagnoses", 0, date=D("2016-07-01")),
        "not after 2016-06-30",
    ),
    "null patient id of an event": (_edit("diagnoses", 3, patient_id=None), "patient_id"),
    "null event date": (_edit("prescriptions", 1, date=None), "column date"),
    "severity 11": (_edit("pain_episodes", 0, severity=11), "column severity"),
    "sex X": (_edit("patients", 0, sex="X"), "column sex"),
    "site null": (_edit("pain_episodes", 1, site=None), "column site"),
    "blank code": (_edit("diagnoses", 2, code="  "), "column code"),
    "empty ATC code": (_edit("prescriptions", 0, atc_code=""), "column atc_code"),
    "code of a no-break space (DuckDB's trim strips it)": (
        _edit("diagnoses", 4, code="\u00a0"),
        "column code",
    ),
    "practice id of an ideographic space": (
        _edit("patients", 8, practice_id="\u3000"),
        "column practice_id",
    ),
    "registration ends before it starts": (
        _edit("patients", 3, registered_to=D("1989-01-01")),
        "registered_to",
    ),
    "birth after the extract date": (
        _edit("patients", 5, birth_date=D("2020-01-01")),
        "birth_date",
    ),
    "null birth date": (_edit("patients", 6, birth_date=None), "birth_date"),
}


@pytest.mark.parametrize("statistics", [True, False], ids=["with statistics", "without statistics"])
@pytest.mark.parametrize("case", list(CASES))
def test_each_problem_gets_the_same_message_from_both_routes(tmp_path, case, statistics):
    change, expected = CASES[case]
    tables = base_tables()
    change(tables)
    folder = write_parquet(
        tmp_path / "db", tables, statistics=statistics, extract_date="2016-06-30"
    )
    fast, plain = messages(folder)
    assert plain is not None and expected in plain
    assert fast == plain


def test_sparse_ids_fall_back_to_the_join_and_still_find_problems(tmp_path):
    tables = base_tables()
    tables["patients"][0]["patient_id"] = 10**12  # range far larger than the table
    folder = write_parquet(tmp_path / "db", tables)
    assert not lookup_taken(folder)
    fast, plain = messages(folder)
    assert fast == plain and "the patient_id of a patient" in plain  # events of patient 1


def test_text_ids_and_a_duckdb_file_give_the_same_answers(tmp_path):
    import duckdb

    tables = base_tables()
    tables["pain_episodes"][0]["date"] = D("1930-01-01")
    folder = write_parquet(tmp_path / "db", tables)
    file = tmp_path / "db.duckdb"
    con = duckdb.connect(str(file))
    for t in TABLES:
        con.execute(
            f"CREATE TABLE {t} AS SELECT * FROM read_parquet('{folder / (t + '.parquet')}')"
        )
    con.close()
    fast, plain = messages(file)
    assert fast == plain and "birth date" in plain
    assert lookup_taken(file)  # typed DuckDB tables, streamed as Arrow


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(
        st.tuples(
            st.sampled_from(["patients", "diagnoses", "pain_episodes", "prescriptions"]),
            st.integers(0, 9),
            st.sampled_from(["patient_id", "date", "birth_date", "severity", "sex"]),
            st.sampled_from(
                [None, 0, 7, 31, 500, -1, "1930-01-01", "2030-01-01", "2000-02-29", "X", 11]
            ),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_any_corruption_gets_the_same_verdict_from_both_routes(tmp_path_factory, edits):
    tables = base_tables()
    for table, i, col, value in edits:
        if col not in {c.name for c in SCHEMA[table]}:
            continue
        kind = TYPES[col]
        if value is None:
            v = None
        elif pa.types.is_date32(kind):
            v = D(value) if isinstance(value, str) and value[0].isdigit() else None
        elif pa.types.is_integer(kind):
            v = value if isinstance(value, int) else None
        else:
            v = str(value)
        tables[table][i % len(tables[table])][col] = v
    folder = write_parquet(tmp_path_factory.mktemp("h") / "db", tables, row_group_size=4)
    fast, plain = messages(folder)
    assert fast == plain


def _rewrite(path, change):
    """Rewrite one Parquet file through ``change(table) -> table``."""
    pq.write_table(change(pq.read_table(path)), path, row_group_size=7)


def _as_timestamps(column, unit):
    def change(t):
        i = t.schema.get_field_index(column)
        return t.set_column(i, column, t.column(column).cast(pa.timestamp(unit)))

    return change


@pytest.mark.parametrize(
    "table, column, unit",
    [
        ("patients", "birth_date", "us"),  # what pandas' to_parquet writes for datetime64 columns
        ("patients", "birth_date", "ns"),
        ("patients", "registered_from", "us"),
        ("diagnoses", "date", "ms"),
    ],
)
@pytest.mark.parametrize("broken", [False, True], ids=["clean", "event before birth"])
def test_timestamps_where_dates_are_expected_get_the_same_verdict(
    tmp_path, table, column, unit, broken
):
    tables = base_tables()
    if broken:
        tables["pain_episodes"][0]["date"] = D("1901-01-01")
    folder = write_parquet(tmp_path / "db", tables)
    _rewrite(folder / f"{table}.parquet", _as_timestamps(column, unit))
    fast, plain = messages(folder)
    assert fast == plain
    assert (plain is None) is (not broken)


def test_dates_beyond_python_s_range_get_the_same_verdict(tmp_path):
    year_12000 = pa.array([3_700_000], pa.int32()).cast(pa.date32())[0]
    extra = write_parquet(tmp_path / "extra", base_tables())  # a column the contract ignores
    _rewrite(
        extra / "patients.parquet",
        lambda t: t.append_column(
            "death_date", pa.array([year_12000.value] * t.num_rows, pa.int32()).cast(pa.date32())
        ),
    )
    assert messages(extra) == (None, None)
    event = write_parquet(tmp_path / "event", base_tables())
    _rewrite(
        event / "diagnoses.parquet",
        lambda t: t.set_column(
            1,
            "date",
            pa.array([year_12000.value] + [10_000] * (t.num_rows - 1), pa.int32()).cast(
                pa.date32()
            ),
        ),
    )
    fast, plain = messages(event)
    assert fast == plain and "column date" in plain


def test_a_repeated_column_name_gets_the_same_verdict(tmp_path):
    tables = base_tables()
    tables["diagnoses"][0]["date"] = D("1900-01-01")  # before birth
    folder = write_parquet(tmp_path / "db", tables)
    _rewrite(
        folder / "diagnoses.parquet",
        lambda t: t.append_column("patient_id", pa.array([0] * t.num_rows, pa.int64())),
    )
    fast, plain = messages(folder)
    assert fast == plain and "birth date" in plain
    twice = write_parquet(tmp_path / "twice", base_tables())
    _rewrite(
        twice / "patients.parquet", lambda t: t.append_column("patient_id", t.column("patient_id"))
    )
    assert messages(twice) == (None, None)
