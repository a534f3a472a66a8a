"""The patient-level data contract: tables, columns, and what each value must be.

One folder per database, one file per table (``<table>.parquet`` or ``<table>.csv``), or a
DuckDB database file holding the same tables. Extra columns are allowed and ignored.
See ``data/README.md`` for the prose version of this contract.
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis.params import PAIN_CAUSES, PAIN_SITES

TABLES = ("patients", "diagnoses", "pain_episodes", "prescriptions")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # id | date | optional_date | text | vocab | integer
    expected: str  # in words, for error messages
    vocabulary: tuple[str, ...] = ()
    low: int | None = None
    high: int | None = None


SCHEMA: dict[str, tuple[Column, ...]] = {
    "patients": (
        Column("patient_id", "id", "a non-empty patient identifier, unique in the table"),
        Column("practice_id", "text", "a non-empty practice identifier"),
        Column("sex", "vocab", "F or M", vocabulary=("F", "M")),
        Column("birth_date", "date", "an ISO date (YYYY-MM-DD) not after today"),
        Column("registered_from", "date", "an ISO date (YYYY-MM-DD)"),
        Column(
            "registered_to", "optional_date", "an ISO date on or after registered_from, or empty"
        ),
    ),
    "diagnoses": (
        Column("patient_id", "id", "the patient_id of a patient in the patients table"),
        Column("date", "date", "an ISO date (YYYY-MM-DD) on or after the birth date"),
        Column("code", "text", "a non-empty ICD-9-CM code such as 428.0"),
    ),
    "pain_episodes": (
        Column("patient_id", "id", "the patient_id of a patient in the patients table"),
        Column("date", "date", "an ISO date (YYYY-MM-DD) on or after the birth date"),
        Column("site", "vocab", "one of " + ", ".join(PAIN_SITES), vocabulary=PAIN_SITES),
        Column("severity", "integer", "an integer 0-10 (numeric rating scale)", low=0, high=10),
        Column("cause", "vocab", "one of " + ", ".join(PAIN_CAUSES), vocabulary=PAIN_CAUSES),
    ),
    "prescriptions": (
        Column("patient_id", "id", "the patient_id of a patient in the patients table"),
        Column("date", "date", "an ISO date (YYYY-MM-DD) on or after the birth date"),
        Column("atc_code", "text", "a non-empty ATC code such as B01AC06"),
    ),
}
