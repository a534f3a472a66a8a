"""Read an OMOP CDM (v5.3/5.4) extract straight into the data contract.

``python -m analysis import --omop FOLDER|FILE.duckdb --into OUT [--code-system ...]``;
the folder holds the CDM tables as ``<table>.csv`` or ``<table>.parquet`` in any letter case
(``PERSON.csv`` as OHDSI's tools write them, ``person.parquet``), or a DuckDB file holds them
as tables (any schema). The mapping (documented in data/README.md):

| contract | OMOP |
|---|---|
| patients.patient_id | person.person_id |
| patients.practice_id | person.care_site_id (``unknown`` when empty) |
| patients.sex | person.gender_concept_id: 8532 -> F, 8507 -> M |
| patients.birth_date | person.birth_datetime, else year/month/day_of_birth (month and day default
to 1 and 1, reported) |
| patients.registered_from / _to | the person's earliest observation_period_start_date / latest
observation_period_end_date |
| diagnoses | condition_occurrence: person_id, condition_start_date, and an ICD-9-CM code by the
row's vocabulary (below) |
| prescriptions | drug_exposure: person_id, drug_exposure_start_date, drug_source_value (ATC) |
| pain_episodes | observation rows whose observation_source_value is a pain-score code (default
LOINC 72514-3, 0-10 numeric rating): observation_date, value_as_number = severity,
qualifier_source_value = site, value_as_string = cause |

Every condition keeps its vocabulary: read from the CONCEPT table (the vocabulary of
``condition_source_concept_id``, else of ``condition_concept_id``) when the extract ships
one, else from ``--code-system``; without either, the import stops rather than guess.
ICD-9-CM codes are kept; ICD-10 and ICD-10-CM go through the project's mapping to ICD-9-CM;
SNOMED CT concepts are mapped through the extract's own vocabulary tables: the ICD-9-CM
concepts whose CONCEPT_RELATIONSHIP "Maps to" reaches the condition's concept or its
nearest ancestor that has such a mapping (CONCEPT_ANCESTOR). What cannot be mapped is left
out of ``diagnoses``, counted by vocabulary in ``import_report.json`` and ``dataset.json``
(``unmapped_diagnoses``), and said by the import and by ``figures``: the risk definitions
see none of those diagnoses. No code of one vocabulary is ever matched against another's
lists.

Rows that cannot be mapped stop the import with their table, column and row, as in
``import``; the output is validated before it is moved into place.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from analysis.engines import sql_identifier, sql_literal
from analysis.errors import AnalysisError
from analysis.files import atomic_write_text
from analysis.importer import map_icd10, publish

PAIN_SCORE_CODES = ("72514-3",)
OMOP_TABLES = (
    "person",
    "observation_period",
    "condition_occurrence",
    "drug_exposure",
    "observation",
)


VOCAB_TABLES = ("concept", "concept_relationship", "concept_ancestor")


def _files_by_name(folder: Path) -> dict[str, Path]:
    """OMOP table files of a folder by lower-case table name (PERSON.csv -> person)."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in (".csv", ".parquet"):
            key = p.stem.lower()
            if key not in out or p.suffix.lower() == ".parquet":  # Parquet first when both
                out[key] = p
    return out


def _attach(con, source: Path) -> dict[str, str]:
    """Views ``omop_<table>`` over the extract's tables (a folder, or a DuckDB file in any
    schema); returns the tables found (lower-case name -> where)."""
    found = {}
    if source.is_file() and source.suffix.lower() in (".duckdb", ".db"):
        con.execute(f"ATTACH {sql_literal(source)} AS omop_src (READ_ONLY)")
        rows = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_catalog = 'omop_src'"
        ).fetchall()
        for schema, name in rows:
            key = name.lower()
            if key in OMOP_TABLES + VOCAB_TABLES and key not in found:
                found[key] = f"omop_src.{sql_identifier(schema)}.{sql_identifier(name)}"
                con.execute(
                    f"CREATE TEMP VIEW omop_{key} AS SELECT *, row_number() OVER () AS __row "
                    f"FROM {found[key]}"
                )
        return found
    for key, p in _files_by_name(source).items():
        if key not in OMOP_TABLES + VOCAB_TABLES:
            continue
        reader = (
            f"read_parquet({sql_literal(p)})"
            if p.suffix.lower() == ".parquet"
            else f"read_csv({sql_literal(p)}, header=true, all_varchar=true)"
        )
        try:
            con.execute(
                f"CREATE TEMP VIEW omop_{key} AS SELECT *, row_number() OVER () AS __row FROM "
                f"{reader}"
            )
            con.execute(f"SELECT count(*) FROM omop_{key}").fetchone()
        except Exception as exc:
            raise AnalysisError(
                f"OMOP table {p} could not be read: {str(exc).splitlines()[0]}"
            ) from None
        found[key] = str(p)
    return found


def _columns(con, view: str) -> set[str]:
    return {r[0].lower() for r in con.execute(f"DESCRIBE SELECT * FROM {view}").fetchall()}


def _birth_date_sql(con) -> tuple[str, str, str]:
    """The date of birth as the CDM defines it (5.3/5.4: ``year_of_birth`` required;
    ``month_of_birth``, ``day_of_birth`` and ``birth_datetime`` optional, and may be absent
    as columns): ``birth_datetime`` where given, else the year with the month and day (1
    where missing). Returns (the date, the condition of a missing year, the condition of a
    date built from the year alone), as SQL over ``omop_person p``."""
    cols = {r[0].lower() for r in con.execute("DESCRIBE omop_person").fetchall()}

    def part(name: str) -> str:
        return f"TRY_CAST(p.{name} AS INTEGER)" if name in cols else "NULL"

    ymd = (
        f"make_date(CAST(p.year_of_birth AS INTEGER), coalesce({part('month_of_birth')}, 1), "
        f"coalesce({part('day_of_birth')}, 1))"
    )
    has_dt = "birth_datetime" in cols
    date = f"coalesce(TRY_CAST(p.birth_datetime AS DATE), {ymd})" if has_dt else ymd
    no_dt = "TRY_CAST(p.birth_datetime AS DATE) IS NULL" if has_dt else "TRUE"
    missing = f"{no_dt} AND TRY_CAST(p.year_of_birth AS INTEGER) IS NULL"
    year_only = f"{no_dt} AND {part('month_of_birth')} IS NULL"
    return date, missing, year_only


def import_omop(
    folder: str | Path,
    into: str | Path,
    *,
    code_system: str | None = None,
    pain_codes=PAIN_SCORE_CODES,
) -> dict:
    """Import an OMOP CDM extract (``folder``: CDM tables as CSV or Parquet, or a DuckDB
    file) into the contract folder ``into``: persons with their observation periods,
    conditions by vocabulary (``code_system`` where there is no CONCEPT table), drug
    exposures, pain observations (``pain_codes``). Rows that cannot be mapped are refused
    by table, column and row; nothing is written unless every table imports. Returns the
    import report."""
    import duckdb

    folder, into = Path(folder), Path(into)
    if not folder.exists():
        raise AnalysisError(
            f"OMOP extract {folder} does not exist (a folder of CDM tables or a .duckdb file)."
        )
    con = duckdb.connect()
    found = _attach(con, folder)
    missing = [t for t in OMOP_TABLES if t not in found]
    if missing:
        raise AnalysisError(
            f"{folder}: no OMOP table {', '.join(missing)} (looked for <table>.csv or "
            ".parquet in any letter case, or a table of that name in a DuckDB file)."
        )
    has_vocab = "concept" in found
    if not has_vocab and code_system is None:
        raise AnalysisError(
            f"{folder}: the extract has no CONCEPT table, so the vocabulary of "
            f"condition_source_value is "
            "unknown (OMOP exports often hold SNOMED CT codes there). Give it with --code-system "
            "icd9cm|icd10|icd10cm|snomed; nothing was imported."
        )
    birth, birth_missing, year_only = _birth_date_sql(con)
    queries = _contract_queries(birth, pain_codes)
    _refuse_unmappable(con, birth_missing)
    into.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{into.name}.tmp-", dir=into.parent))
    report = {"source": "OMOP CDM", "tables": {}, "repairs": {}}
    try:
        report["repairs"]["birth_date_from_year_only"] = con.execute(
            f"SELECT count(*) FROM omop_person p WHERE {year_only}"
        ).fetchone()[0]
        for table, q in queries.items():
            if table == "diagnoses":
                q = _diagnoses_sql(con, found, code_system, tmp, report)
            con.execute(
                f"COPY ({q}) TO {sql_literal(tmp / (table + '.parquet'))} "
                "(FORMAT parquet, COMPRESSION zstd)"
            )
            report["tables"][table] = con.execute(
                f"SELECT count(*) FROM read_parquet({sql_literal(tmp / (table + '.parquet'))})"
            ).fetchone()[0]
        meta = {"synthetic": False, "imported_from": "OMOP CDM", "diagnosis_vocabulary": "ICD9CM"}
        if report["unmapped_diagnoses"]:
            meta["unmapped_diagnoses"] = report["unmapped_diagnoses"]
        if report.get("code_mapping"):
            meta["code_mapping"] = report["code_mapping"]
        atomic_write_text(tmp / "dataset.json", json.dumps(meta) + "\n")
        atomic_write_text(
            tmp / "import_report.json", json.dumps(report, indent=2, default=int) + "\n"
        )
        publish(
            tmp,
            into,
            source_hint="These checks run on the imported tables: a row number "
            "counts the imported rows of that table, in the order of the OMOP source table.",
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        con.close()
    return report


def _contract_queries(birth: str, pain_codes) -> dict:
    """The SQL that reads each contract table from the OMOP tables (diagnoses: by
    vocabulary, :func:`_diagnoses_sql`); ``birth``: the birth date's SQL."""
    codes = ", ".join(sql_literal(c) for c in pain_codes)
    return {
        "patients": f"""
            SELECT CAST(p.person_id AS BIGINT) AS patient_id,
                   coalesce(CAST(p.care_site_id AS VARCHAR), 'unknown') AS practice_id,
                   CASE CAST(p.gender_concept_id AS VARCHAR) WHEN '8532' THEN 'F' WHEN '8507' THEN
                   'M' END AS sex,
                   {birth} AS birth_date,
                   op.start_date AS registered_from, op.end_date AS registered_to
            FROM omop_person p LEFT JOIN (
                SELECT person_id, min(CAST(observation_period_start_date AS DATE)) AS start_date,
                       max(CAST(observation_period_end_date AS DATE)) AS end_date
                FROM omop_observation_period GROUP BY person_id) op ON op.person_id =
                p.person_id""",
        "diagnoses": None,  # by vocabulary, below
        "prescriptions": """
            SELECT CAST(person_id AS BIGINT) AS patient_id, CAST(drug_exposure_start_date AS DATE)
            AS date,
                   trim(CAST(drug_source_value AS VARCHAR)) AS atc_code
            FROM omop_drug_exposure""",
        "pain_episodes": f"""
            SELECT CAST(person_id AS BIGINT) AS patient_id, CAST(observation_date AS DATE) AS date,
                   lower(trim(CAST(qualifier_source_value AS VARCHAR))) AS site,
                   CAST(TRY_CAST(value_as_number AS DOUBLE) AS INTEGER) AS severity,
                   lower(trim(CAST(value_as_string AS VARCHAR))) AS cause
            FROM omop_observation WHERE CAST(observation_source_value AS VARCHAR) IN ({codes})""",
    }


def _refuse_unmappable(con, birth_missing: str) -> None:
    """Refuse rows that cannot be mapped, named by OMOP table, column and row."""
    checks = [
        (
            "person",
            "gender_concept_id",
            "CAST(gender_concept_id AS VARCHAR) NOT IN ('8532', '8507')",
            "8532 (female) or 8507 (male)",
        ),
        (
            "person",
            "year_of_birth",
            birth_missing,
            "a year of birth (or birth_datetime)",
        ),
        (
            "condition_occurrence",
            "condition_source_value",
            "condition_source_value IS NULL OR trim(CAST(condition_source_value AS VARCHAR)) = ''",
            "the source code (ICD) of the condition",
        ),
        (
            "drug_exposure",
            "drug_source_value",
            "drug_source_value IS NULL OR trim(CAST(drug_source_value AS VARCHAR)) = ''",
            "the ATC code",
        ),
    ]
    problems = []
    for table, col, pred, expected in checks:
        for r, v in con.execute(
            f"SELECT __row, CAST({col} AS VARCHAR) FROM omop_{table} p WHERE {pred} "
            "ORDER BY __row LIMIT 20"
        ).fetchall():
            problems.append(
                f"OMOP {table}, column {col}, row {r}: expected {expected}, found {v!r}"
            )
    if problems:
        raise AnalysisError("The OMOP extract cannot be imported:\n  " + "\n  ".join(problems))


CODE_SYSTEMS = {"icd9cm": "ICD9CM", "icd10": "ICD10", "icd10cm": "ICD10CM", "snomed": "SNOMED"}


def _diagnoses_sql(con, found: dict, code_system: str | None, tmp: Path, report: dict) -> str:
    """The contract's diagnoses (ICD-9-CM) from condition_occurrence, each row read in its
    own vocabulary (module docstring); fills ``report['unmapped_diagnoses']``."""
    cols = _columns(con, "omop_condition_occurrence")
    default = CODE_SYSTEMS.get((code_system or "").lower(), "UNKNOWN")
    if "concept" in found:
        src = (
            "TRY_CAST(co.condition_source_concept_id AS BIGINT)"
            if "condition_source_concept_id" in cols
            else "NULL"
        )
        std = (
            "TRY_CAST(co.condition_concept_id AS BIGINT)"
            if "condition_concept_id" in cols
            else "NULL"
        )
        vocab = f"coalesce(cs.vocabulary_id, cc.vocabulary_id, {sql_literal(default)})"
        joins = (
            f"LEFT JOIN omop_concept cs ON TRY_CAST(cs.concept_id AS BIGINT) = {src} AND {src} <> "
            f"0 "
            f"LEFT JOIN omop_concept cc ON TRY_CAST(cc.concept_id AS BIGINT) = {std} AND {std} <> 0"
        )
        concept = f"CASE WHEN cs.vocabulary_id IS NOT NULL THEN {src} ELSE {std} END"
    else:
        vocab, joins, concept = sql_literal(default), "", "NULL"
    con.execute(f"""CREATE OR REPLACE TEMP TABLE dx_all AS
        SELECT CAST(co.person_id AS BIGINT) AS patient_id, CAST(co.condition_start_date AS DATE) AS
        date,
               trim(CAST(co.condition_source_value AS VARCHAR)) AS code,
               upper(replace(CAST({vocab} AS VARCHAR), '-', '')) AS vocabulary, {concept} AS
               concept_id
        FROM omop_condition_occurrence co {joins}""")
    parts = ["SELECT patient_id, date, code FROM dx_all WHERE vocabulary = 'ICD9CM'"]
    icd10 = con.execute(
        "SELECT count(*) FROM dx_all WHERE vocabulary IN ('ICD10', 'ICD10CM')"
    ).fetchone()[0]
    if icd10:
        parts.append(
            map_icd10(
                con,
                "SELECT patient_id, date, code FROM dx_all "
                "WHERE vocabulary IN ('ICD10', 'ICD10CM')",
                tmp,
                report,
            )
        )
    snomed_mapped = _snomed_to_icd9(con, found)
    if snomed_mapped:
        parts.append(snomed_mapped)
    # what is left out, by vocabulary (ICD-10 codes without a mapping are listed by map_icd10)
    mapped_snomed = (
        "concept_id IN (SELECT concept_id FROM snomed_icd9)" if snomed_mapped else "FALSE"
    )
    rows = con.execute(f"""SELECT vocabulary, count(*) FROM dx_all
        WHERE vocabulary NOT IN ('ICD9CM', 'ICD10', 'ICD10CM') AND NOT (vocabulary = 'SNOMED' AND
        {mapped_snomed})
        GROUP BY vocabulary ORDER BY vocabulary""").fetchall()
    unmapped = {v: int(n) for v, n in rows}
    if report["repairs"].get("icd10_unmapped_records"):
        unmapped["ICD10"] = report["repairs"]["icd10_unmapped_records"]
    report["unmapped_diagnoses"] = unmapped
    report["diagnoses_by_vocabulary"] = {
        v: int(n)
        for v, n in con.execute(
            "SELECT vocabulary, count(*) FROM dx_all GROUP BY 1 ORDER BY 1"
        ).fetchall()
    }
    return " UNION ALL ".join(f"({q})" for q in parts)


def _snomed_to_icd9(con, found: dict) -> str | None:
    """SQL of SNOMED-coded conditions as ICD-9-CM codes, through the extract's vocabulary
    tables (None without CONCEPT_RELATIONSHIP): for each SNOMED concept, the ICD-9-CM
    concepts that "Maps to" it or, failing that, its nearest ancestor that has any."""
    if "concept_relationship" not in found or "concept" not in found:
        return None
    if "concept_ancestor" in found:
        reach = (
            "SELECT TRY_CAST(ancestor_concept_id AS BIGINT) AS target, "
            "TRY_CAST(descendant_concept_id AS BIGINT) "
            "AS concept_id, TRY_CAST(min_levels_of_separation AS INTEGER) AS levels FROM "
            "omop_concept_ancestor "
            "UNION ALL SELECT DISTINCT concept_id, concept_id, 0 FROM dx_all WHERE vocabulary = "
            "'SNOMED'"
        )
    else:
        reach = (
            "SELECT DISTINCT concept_id AS target, concept_id, 0 AS levels FROM dx_all "
            "WHERE vocabulary = 'SNOMED'"
        )
    con.execute(f"""CREATE OR REPLACE TEMP TABLE snomed_icd9 AS
        WITH maps AS (
            SELECT TRY_CAST(cr.concept_id_2 AS BIGINT) AS target, c9.concept_code AS icd9
            FROM omop_concept_relationship cr
            JOIN omop_concept c9 ON TRY_CAST(c9.concept_id AS BIGINT) = TRY_CAST(cr.concept_id_1 AS
            BIGINT)
            WHERE cr.relationship_id = 'Maps to' AND upper(replace(c9.vocabulary_id, '-', '')) =
            'ICD9CM'),
        reach AS ({reach}),
        cand AS (SELECT r.concept_id, r.levels, m.icd9 FROM reach r JOIN maps m ON m.target =
        r.target
                 WHERE r.concept_id IN (SELECT concept_id FROM dx_all WHERE vocabulary = 'SNOMED'))
        SELECT DISTINCT concept_id, icd9 FROM cand c
        WHERE levels = (SELECT min(levels) FROM cand c2 WHERE c2.concept_id = c.concept_id)""")
    return (
        "SELECT d.patient_id, d.date, s.icd9 AS code FROM dx_all d JOIN snomed_icd9 s "
        "ON s.concept_id = d.concept_id WHERE d.vocabulary = 'SNOMED'"
    )
