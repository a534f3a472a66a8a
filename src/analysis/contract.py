"""The patient-level data contract: tables, columns, and what each value must be, declared
once. Everything else is derived from this declaration: the validation (both routes), the
typed views the analysis reads, the PostgreSQL tables of ``load``, the Arrow schemas of the
synthetic generator, the importer's checks, the test fixtures and the contract table of
``data/README.md`` (a test checks that it matches :func:`markdown_table`).

One folder per database, one file per table (``<table>.parquet`` or ``<table>.csv``), or a
DuckDB database file holding the same tables. Extra columns are allowed and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

TABLES = ("patients", "diagnoses", "pain_episodes", "prescriptions")

# vocabularies of the contract's coded columns
SEXES = ("F", "M")
DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y%m%d", "%Y/%m/%d", "%m/%d/%Y")
"""Date formats an extract may be written in (the first, ISO, is the contract's): the
importer reads them, and the contract's error says which one a column is in."""
PAIN_SITES = ("hip", "neck", "back", "knee", "shoulder", "other")
PAIN_CAUSES = ("osteoarticular", "traumatic", "neuropathic", "other")

# per kind of column: the SQL type of the typed views, the PostgreSQL type of `load`
SQL_TYPE = {
    "text": "VARCHAR",
    "vocab": "VARCHAR",
    "date": "DATE",
    "optional_date": "DATE",
    "integer": "INTEGER",
}
PG_TYPE = {
    "text": "TEXT",
    "vocab": "TEXT",
    "date": "DATE",
    "optional_date": "DATE",
    "integer": "INTEGER",
}


@dataclass(frozen=True)
class Column:
    """One column: ``kind`` is its rule (id | date | optional_date | text | vocab | integer),
    ``expected`` the rule in words (error messages), ``description`` what it holds (the
    README), ``arrow`` its storage type in the generator's Parquet files."""

    name: str
    kind: str
    expected: str
    vocabulary: tuple[str, ...] = ()
    low: int | None = None
    high: int | None = None
    description: str = ""
    arrow: str = "string"  # int64 | string | date32 | int8


# every event table refers to a patient and is dated
_PATIENT_REF = Column(
    "patient_id",
    "id",
    "the patient_id of a patient in the patients table",
    description="a patient of `patients`",
    arrow="int64",
)


def _event_date(description: str) -> Column:
    return Column(
        "date",
        "date",
        "an ISO date (YYYY-MM-DD) on or after the birth date",
        description=description,
        arrow="date32",
    )


SCHEMA: dict[str, tuple[Column, ...]] = {
    "patients": (
        Column(
            "patient_id",
            "id",
            "a non-empty patient identifier, unique in the table",
            description="unique per patient (integer or text)",
            arrow="int64",
        ),
        Column(
            "practice_id",
            "text",
            "a non-empty practice identifier",
            description="the patient's GP practice",
        ),
        Column("sex", "vocab", "F or M", vocabulary=SEXES, description="`F` or `M`"),
        Column(
            "birth_date",
            "date",
            "an ISO date (YYYY-MM-DD) not after today",
            description="date of birth",
            arrow="date32",
        ),
        Column(
            "registered_from",
            "date",
            "an ISO date (YYYY-MM-DD)",
            description="start of registration with the practice",
            arrow="date32",
        ),
        Column(
            "registered_to",
            "optional_date",
            "an ISO date on or after registered_from, or empty",
            description="end of registration; empty while registered",
            arrow="date32",
        ),
    ),
    "diagnoses": (
        _PATIENT_REF,
        _event_date("date recorded"),
        Column(
            "code",
            "text",
            "a non-empty ICD-9-CM code such as 428.0",
            description="diagnosis code, ICD-9-CM unless `dataset.json` says otherwise "
            "(`428.0`, `4280`)",
        ),
    ),
    "pain_episodes": (
        _PATIENT_REF,
        _event_date("date of the episode"),
        Column(
            "site",
            "vocab",
            "one of " + ", ".join(PAIN_SITES),
            vocabulary=PAIN_SITES,
            description="one of " + ", ".join(f"`{s}`" for s in PAIN_SITES),
        ),
        Column(
            "severity",
            "integer",
            "an integer 0-10 (numeric rating scale)",
            low=0,
            high=10,
            description="0-10 numeric rating scale",
            arrow="int8",
        ),
        Column(
            "cause",
            "vocab",
            "one of " + ", ".join(PAIN_CAUSES),
            vocabulary=PAIN_CAUSES,
            description="one of " + ", ".join(f"`{c}`" for c in PAIN_CAUSES),
        ),
    ),
    "prescriptions": (
        _PATIENT_REF,
        _event_date("date prescribed"),
        Column(
            "atc_code",
            "text",
            "a non-empty ATC code such as B01AC06",
            description="WHO ATC code (`B01AC06`)",
        ),
    ),
}


def column_names(table: str) -> list[str]:
    return [c.name for c in SCHEMA[table]]


def pg_columns(table: str, id_type: str) -> list[tuple[str, str]]:
    """(name, PostgreSQL type) of a table, the id column as ``id_type``."""
    return [(c.name, id_type if c.kind == "id" else PG_TYPE[c.kind]) for c in SCHEMA[table]]


def arrow_schema(table: str, metadata: dict | None = None):
    """The Arrow schema of a table as the generator writes it."""
    import pyarrow as pa

    types = {"int64": pa.int64(), "string": pa.string(), "date32": pa.date32(), "int8": pa.int8()}
    md = {k.encode(): str(v).encode() for k, v in (metadata or {}).items()}
    return pa.schema([(c.name, types[c.arrow]) for c in SCHEMA[table]], metadata=md or None)


KIND_WORDS = {
    "id": "id",
    "text": "text",
    "vocab": "text (fixed values)",
    "date": "date",
    "optional_date": "date or empty",
    "integer": "integer",
}


def markdown_table() -> str:
    """The contract as the Markdown table of ``data/README.md``."""
    rows = ["| table | column | type | what it holds | rule |", "|---|---|---|---|---|"]
    for table in TABLES:
        for c in SCHEMA[table]:
            kind = KIND_WORDS[c.kind]
            rows.append(f"| `{table}` | `{c.name}` | {kind} | {c.description} | {c.expected} |")
    return "\n".join(rows)
