"""Read an OMOP CDM (v5.3/5.4) extract straight into the data contract.

``python -m analysis import --omop FOLDER --into OUT [--code-system icd10]``; the folder
holds the CDM tables as ``<table>.csv`` or ``<table>.parquet``. The mapping (documented in
data/README.md):

| contract | OMOP |
|---|---|
| patients.patient_id | person.person_id |
| patients.practice_id | person.care_site_id (``unknown`` when empty) |
| patients.sex | person.gender_concept_id: 8532 -> F, 8507 -> M |
| patients.birth_date | person.birth_datetime, else year/month/day_of_birth (month and day default to 1 and 1, reported) |
| patients.registered_from / _to | the person's earliest observation_period_start_date / latest observation_period_end_date |
| diagnoses | condition_occurrence: person_id, condition_start_date, condition_source_value (ICD-9-CM, or ICD-10 mapped as in ``import``) |
| prescriptions | drug_exposure: person_id, drug_exposure_start_date, drug_source_value (ATC) |
| pain_episodes | observation rows whose observation_source_value is a pain-score code (default LOINC 72514-3, 0-10 numeric rating): observation_date, value_as_number = severity, qualifier_source_value = site, value_as_string = cause |

Rows that cannot be mapped stop the import with their table, column and row, as in
``import``; the output is validated before it is moved into place.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from analysis.errors import AnalysisError

PAIN_SCORE_CODES = ("72514-3",)
OMOP_TABLES = ("person", "observation_period", "condition_occurrence", "drug_exposure", "observation")


def _source(con, folder: Path, table: str) -> None:
    for ext, reader in ((".parquet", "read_parquet('{p}')"),
                        (".csv", "read_csv('{p}', header=true, all_varchar=true)")):
        p = folder / f"{table}{ext}"
        if p.exists():
            try:
                con.execute(f"CREATE TEMP VIEW omop_{table} AS SELECT *, row_number() OVER () AS __row "
                            f"FROM {reader.format(p=p)}")
                con.execute(f"SELECT count(*) FROM omop_{table}").fetchone()
            except Exception as exc:
                raise AnalysisError(f"OMOP table {p} could not be read: {str(exc).splitlines()[0]}") from None
            return
    raise AnalysisError(f"{folder}: no OMOP table {table} ({table}.csv or {table}.parquet).")


def import_omop(folder: str | Path, into: str | Path, *, code_system: str = "icd9cm",
                pain_codes=PAIN_SCORE_CODES) -> dict:
    import duckdb

    folder, into = Path(folder), Path(into)
    if not folder.is_dir():
        raise AnalysisError(f"OMOP folder {folder} does not exist.")
    con = duckdb.connect()
    for t in OMOP_TABLES:
        _source(con, folder, t)
    codes = ", ".join(f"'{c}'" for c in pain_codes)
    queries = {
        "patients": """
            SELECT CAST(p.person_id AS BIGINT) AS patient_id,
                   coalesce(CAST(p.care_site_id AS VARCHAR), 'unknown') AS practice_id,
                   CASE CAST(p.gender_concept_id AS VARCHAR) WHEN '8532' THEN 'F' WHEN '8507' THEN 'M' END AS sex,
                   coalesce(TRY_CAST(p.birth_datetime AS DATE),
                            make_date(CAST(p.year_of_birth AS INTEGER), coalesce(TRY_CAST(p.month_of_birth AS INTEGER), 1),
                                      coalesce(TRY_CAST(p.day_of_birth AS INTEGER), 1))) AS birth_date,
                   op.start_date AS registered_from, op.end_date AS registered_to
            FROM omop_person p LEFT JOIN (
                SELECT person_id, min(CAST(observation_period_start_date AS DATE)) AS start_date,
                       max(CAST(observation_period_end_date AS DATE)) AS end_date
                FROM omop_observation_period GROUP BY person_id) op ON op.person_id = p.person_id""",
        "diagnoses": """
            SELECT CAST(person_id AS BIGINT) AS patient_id, CAST(condition_start_date AS DATE) AS date,
                   trim(CAST(condition_source_value AS VARCHAR)) AS code
            FROM omop_condition_occurrence""",
        "prescriptions": """
            SELECT CAST(person_id AS BIGINT) AS patient_id, CAST(drug_exposure_start_date AS DATE) AS date,
                   trim(CAST(drug_source_value AS VARCHAR)) AS atc_code
            FROM omop_drug_exposure""",
        "pain_episodes": f"""
            SELECT CAST(person_id AS BIGINT) AS patient_id, CAST(observation_date AS DATE) AS date,
                   lower(trim(CAST(qualifier_source_value AS VARCHAR))) AS site,
                   CAST(TRY_CAST(value_as_number AS DOUBLE) AS INTEGER) AS severity,
                   lower(trim(CAST(value_as_string AS VARCHAR))) AS cause
            FROM omop_observation WHERE CAST(observation_source_value AS VARCHAR) IN ({codes})""",
    }
    # rows that cannot be mapped, named by OMOP table, column and row
    checks = [
        ("person", "gender_concept_id", "CAST(gender_concept_id AS VARCHAR) NOT IN ('8532', '8507')",
         "8532 (female) or 8507 (male)"),
        ("person", "year_of_birth", "birth_datetime IS NULL AND TRY_CAST(year_of_birth AS INTEGER) IS NULL",
         "a year of birth (or birth_datetime)"),
        ("condition_occurrence", "condition_source_value",
         "condition_source_value IS NULL OR trim(CAST(condition_source_value AS VARCHAR)) = ''",
         "the source code (ICD) of the condition"),
        ("drug_exposure", "drug_source_value",
         "drug_source_value IS NULL OR trim(CAST(drug_source_value AS VARCHAR)) = ''", "the ATC code"),
    ]
    problems = []
    for table, col, pred, expected in checks:
        for r, v in con.execute(f"SELECT __row, CAST({col} AS VARCHAR) FROM omop_{table} WHERE {pred} "
                                "ORDER BY __row LIMIT 20").fetchall():
            problems.append(f"OMOP {table}, column {col}, row {r}: expected {expected}, found {v!r}")
    if problems:
        raise AnalysisError("The OMOP extract cannot be imported:\n  " + "\n  ".join(problems))
    into.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{into.name}.tmp-", dir=into.parent))
    report = {"source": "OMOP CDM", "tables": {}, "repairs": {}}
    try:
        report["repairs"]["birth_date_from_year_only"] = con.execute(
            "SELECT count(*) FROM omop_person WHERE birth_datetime IS NULL AND month_of_birth IS NULL").fetchone()[0]
        for table, q in queries.items():
            if table == "diagnoses" and code_system == "icd10":
                from analysis.importer import map_icd10

                q = map_icd10(con, q, tmp, report)
            con.execute(f"COPY ({q}) TO '{tmp / (table + '.parquet')}' (FORMAT parquet, COMPRESSION zstd)")
            report["tables"][table] = con.execute(f"SELECT count(*) FROM '{tmp / (table + '.parquet')}'").fetchone()[0]
        (tmp / "dataset.json").write_text(json.dumps({"synthetic": False, "imported_from": "OMOP CDM"}) + "\n")
        (tmp / "import_report.json").write_text(json.dumps(report, indent=2, default=int) + "\n")
        from analysis.importer import publish

        publish(tmp, into, source_hint="These checks run on the imported tables: a row number "
                "counts the imported rows of that table, in the order of the OMOP source table.")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        con.close()
    return report
