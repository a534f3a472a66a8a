"""Data quality of a database in the contract, as aggregates computed in the engine.

Everything here passes validation already (validation refuses what is impossible); these
are the things that are possible but worth a look before trusting an analysis:
completeness per column, implausible values, duplicate records, events outside the
patient's registration or after the index date, and how much of the recorded codes the
code lists cover.
"""

from __future__ import annotations

import pandas as pd

from analysis.codelists import available_codelists, load_codelist
from analysis.contract import SCHEMA, TABLES
from analysis.data import Database
from analysis.params import Params


def completeness(db: Database) -> pd.DataFrame:
    """Per table and column: records, records with a value, % complete."""
    rows = []
    for table in TABLES:
        cols = [c.name for c in SCHEMA[table]]
        sel = ", ".join(f"count({c})" for c in cols)
        counts = db.con.execute(f"SELECT count(*), {sel} FROM {table}").fetchone()
        total = counts[0]
        for c, n in zip(cols, counts[1:], strict=True):
            rows.append(
                {
                    "table": table,
                    "column": c,
                    "records": total,
                    "with_value": n,
                    "pct_complete": 100.0 * n / total if total else float("nan"),
                }
            )
    return pd.DataFrame(rows)


def _years_before(d, years: int):
    """The same day ``years`` earlier (28 February for 29 February): a birth on or before
    it means at least ``years`` completed years on ``d``."""
    try:
        return d.replace(year=d.year - years)
    except ValueError:
        return d.replace(year=d.year - years, day=28)


def plausibility(db: Database, params: Params) -> pd.DataFrame:
    """Counts of values that are allowed but implausible or ignored by the definitions."""
    idx = params.index.isoformat()
    checks = [
        (
            "patients",
            "aged over 105 at the index date",
            f"FROM patients WHERE birth_date <= DATE '{_years_before(params.index, 106)}'",
        ),
        ("patients", "born after the index date", f"FROM patients WHERE birth_date > DATE '{idx}'"),
        ("patients", "registered before birth", "FROM patients WHERE registered_from < birth_date"),
        (
            "patients",
            "registration ended before the window started",
            f"FROM patients WHERE registered_to < DATE '{params.window_start}'",
        ),
    ]
    for t in TABLES[1:]:
        checks += [
            (
                t,
                "after the index date (ignored by the definitions)",
                f"FROM {t} WHERE date > DATE '{idx}'",
            ),
            (
                t,
                "before the patient's registration",
                f"FROM {t} e JOIN patients p USING (patient_id) WHERE e.date < p.registered_from",
            ),
            (
                t,
                "after the patient's registration ended",
                f"FROM {t} e JOIN patients p USING (patient_id) WHERE e.date > p.registered_to",
            ),
        ]
    checks.append(
        (
            "pain_episodes",
            "severity 0 (no pain recorded as an episode)",
            "FROM pain_episodes WHERE severity = 0",
        )
    )
    rows = []
    for table, what, q in checks:
        n, patients = db.con.execute(f"SELECT count(*), count(DISTINCT patient_id) {q}").fetchone()
        total = db.con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        rows.append(
            {
                "table": table,
                "check": what,
                "records": n,
                "patients": patients,
                "pct": 100.0 * n / total if total else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def duplicates(db: Database) -> pd.DataFrame:
    """Records that repeat another record of the same table exactly, and the patients
    they belong to."""
    rows = []
    for t in TABLES[1:]:
        cols = ", ".join(c.name for c in SCHEMA[t])
        total = db.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        extra, patients = db.con.execute(
            f"SELECT coalesce(sum(k - 1), 0), count(DISTINCT patient_id) FROM (SELECT {cols}, "
            f"count(*) AS k "
            f"FROM {t} GROUP BY {cols} HAVING count(*) > 1) AS repeated"
        ).fetchone()
        rows.append(
            {
                "table": t,
                "records": total,
                "exact_duplicates": int(extra),
                "patients": patients,
                "pct": 100.0 * int(extra) / total if total else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def code_coverage(db: Database, params: Params) -> pd.DataFrame:
    """Share of diagnosis and prescription records whose code is in any code list, and in
    the lists the analysis uses."""
    all_lists = available_codelists()
    out = []
    for table, column, used in (
        ("diagnoses", "code", params.risk_conditions),
        ("prescriptions", "atc_code", params.risk_drugs),
    ):
        kinds = {"any code list": all_lists, "the lists the analysis uses": list(used)}
        total = db.con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for label, lists in kinds.items():
            prefixes = sorted({p for name in lists for p in load_codelist(name).codes})
            if not prefixes:
                continue
            cond = " OR ".join(
                f"starts_with(upper(replace(trim({column}), '.', '')), '{p}')" for p in prefixes
            )
            n = db.con.execute(
                f"SELECT count(*) FROM (SELECT DISTINCT {column} AS c FROM {table}) d "
                f"JOIN {table} t ON t.{column} = d.c WHERE {cond.replace(column, 'd.c')}"
            ).fetchone()[0]
            out.append(
                {
                    "table": table,
                    "covered_by": label,
                    "records": total,
                    "matched": n,
                    "pct": 100.0 * n / total if total else float("nan"),
                }
            )
    return pd.DataFrame(out)


def unmatched_codes(db: Database, top: int = 15) -> pd.DataFrame:
    """The most frequent diagnosis codes that no code list matches, with the number of
    patients and of records per code (disclosure control counts the patients)."""
    prefixes = sorted({p for name in available_codelists() for p in load_codelist(name).codes})
    cond = " OR ".join(f"starts_with(upper(replace(trim(code), '.', '')), '{p}')" for p in prefixes)
    return db.con.execute(
        f"SELECT code, count(DISTINCT patient_id) AS patients, count(*) AS records FROM diagnoses "
        f"WHERE NOT ({cond}) "
        f"GROUP BY code ORDER BY records DESC, code LIMIT {int(top)}"
    ).df()
