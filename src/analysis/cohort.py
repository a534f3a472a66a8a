"""Cohort definitions: per-patient flags, computed in one pass in the engine.

Definitions (the paper's, with the defaults of :class:`analysis.params.Params`):

* **Population**: every patient in the database.
* **Age**: completed years at the index date (a birthday on 29 February is reached on
  1 March in a non-leap year).
* **Qualifying pain episode**: a pain episode dated in the look-back window (window start
  and index date both included) at one of the pain sites (hip, neck, back, knee), of an
  osteo-articular cause, with severity of at least 4 on the 0-10 numeric rating scale
  (moderate or severe).
* **Pain cohort**: patients with at least one qualifying pain episode.
* **Recurrent pain**: at least ``min_episodes`` (2) qualifying episodes.
* **Risk condition**: at least one diagnosis, on or before the index date, whose code
  starts with an entry of one of the ``risk_condition_*`` code lists (dots ignored).
* **Risk drug**: at least one prescription, on or before the index date, in a
  ``risk_drug_*`` ATC list.
* **Elderly**: aged ``elderly_age`` (75) or more.
* **Target subgroup**: in the pain cohort, recurrent, elderly, and with a risk condition or
  a risk drug (P9 of the paper).

The engine (DuckDB by default) reduces the patient-level tables to a *profile cube*: the
number of patients for every combination of age, sex and the features the definitions need
(qualifying-episode counts at each severity threshold, capped; pain sites; risk-condition
groups and risk-drug groups as bit masks) with sums of the number of drugs. Every flag and
statistic of the study, for every threshold of the sensitivity grid, derives from that
cube, so the data are read once and no patient-level row reaches pandas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.codelists import load_codelist
from analysis.data import Database
from analysis.params import Params


@dataclass
class ProfileCube:
    """Counts of patients by age, sex and cohort features (see module docstring)."""

    cells: pd.DataFrame  # columns: age, sex, q<s>..., site_mask, cond_mask, drug_mask, n, drugs_sum, drugs_sq
    params: Params
    severities: tuple[int, ...]
    episode_cap: int
    condition_lists: tuple[str, ...]
    drug_lists: tuple[str, ...]
    sites: tuple[str, ...]
    data_label: str = "data"
    is_synthetic: bool = False
    drug_counts: bool = False  # whether drugs_sum / drugs_sq hold the number of drugs

    @property
    def n_total(self) -> int:
        return int(self.cells["n"].sum())

    # ---- masks ------------------------------------------------------------------
    def condition_bits(self, lists=None) -> int:
        lists = self.params.risk_conditions if lists is None else lists
        return sum(1 << self.condition_lists.index(x) for x in lists)

    def drug_bits(self, lists=None) -> int:
        lists = self.params.risk_drugs if lists is None else lists
        return sum(1 << self.drug_lists.index(x) for x in lists)

    def flags(self, params: Params | None = None) -> pd.DataFrame:
        """Boolean flag columns for every cell, under ``params`` (default: the cube's)."""
        p = params or self.params
        c = self.cells
        q = c[f"q{p.min_severity}"]
        out = pd.DataFrame(index=c.index)
        out["pain"] = q >= 1
        out["recurrent"] = q >= p.min_episodes
        out["risk_condition"] = (c["cond_mask"] & self.condition_bits(p.risk_conditions)) != 0
        out["risk_drug"] = (c["drug_mask"] & self.drug_bits(p.risk_drugs)) != 0
        out["elderly"] = c["age"] >= p.elderly_age
        out["pain_risk"] = out["pain"] & out["risk_condition"]
        out["target"] = out["pain"] & out["recurrent"] & out["elderly"] & (
            out["risk_condition"] | out["risk_drug"])
        return out

    def count(self, mask) -> int:
        return int(self.cells.loc[mask, "n"].sum())


def _sql_list(values) -> str:
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)


def _code_map_sql(db: Database, table: str, column: str, lists, name: str) -> None:
    """A small table code -> bit mask for every distinct code of ``table`` that matches a
    list (prefix match, dots ignored), so that the big table joins on equality."""
    rows = []
    for bit, cl_name in enumerate(lists):
        cl = load_codelist(cl_name)
        rows.extend((bit, prefix) for prefix in cl.codes)
    db.con.execute(f"CREATE OR REPLACE TEMP TABLE {name}_prefix (bit INTEGER, prefix VARCHAR)")
    if rows:
        db.con.executemany(f"INSERT INTO {name}_prefix VALUES (?, ?)", rows)
    db.con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {name} AS
        WITH codes AS (SELECT DISTINCT {column} AS code FROM {table})
        SELECT code, CAST(bit_or(CAST(1 AS BIGINT) << p.bit) AS BIGINT) AS mask
        FROM codes JOIN {name}_prefix p
          ON starts_with(upper(replace(trim(code), '.', '')), p.prefix)
        GROUP BY code"""
    )


def profile_cube(db: Database, params: Params, *, severities=(), episode_cap: int | None = None,
                 condition_lists=None, drug_lists=None, drug_counts: bool = False) -> ProfileCube:
    """Reduce the database to the profile cube, in one pass over each table.

    ``severities`` adds severity thresholds (beyond ``params.min_severity``) and
    ``episode_cap`` the largest recurrence threshold the caller will ask about, so that a
    whole sensitivity grid is answered from the same cube. ``drug_counts`` adds the
    number of distinct ATC codes prescribed in the window (for Table 1; it costs a
    distinct count over every prescription).
    """
    sev = tuple(sorted({params.min_severity, *severities}))
    cap = max(params.min_episodes, episode_cap or 0)
    cond_lists = tuple(condition_lists or params.risk_conditions)
    drug_lists = tuple(drug_lists or params.risk_drugs)
    for x in params.risk_conditions:
        if x not in cond_lists:
            cond_lists = (*cond_lists, x)
    sites = tuple(params.pain_sites)
    idx = params.index.isoformat()
    ws = params.window_start.isoformat()
    _code_map_sql(db, "diagnoses", "code", cond_lists, "cond_map")
    _code_map_sql(db, "prescriptions", "atc_code", drug_lists, "drug_map")
    site_case = " ".join(f"WHEN '{s}' THEN {1 << i}" for i, s in enumerate(sites))
    q_cols = ", ".join(
        f"least(count(*) FILTER (WHERE severity >= {s}), {cap}) AS q{s}" for s in sev)
    q_sel = ", ".join(f"coalesce(q.q{s}, 0) AS q{s}" for s in sev)
    q_grp = ", ".join(f"q{s}" for s in sev)
    base = params.min_severity
    if drug_counts:
        n_drugs_sql = (f"SELECT patient_id, count(*) AS n_drugs FROM (SELECT DISTINCT patient_id, atc_code "
                       f"FROM prescriptions WHERE date BETWEEN DATE '{ws}' AND DATE '{idx}') GROUP BY patient_id")
        n_drugs_col = "coalesce(nd.n_drugs, 0)"
        n_drugs_join = "LEFT JOIN nd ON nd.patient_id = p.patient_id"
    else:
        n_drugs_sql = "SELECT NULL::BIGINT AS patient_id, 0 AS n_drugs WHERE FALSE"
        n_drugs_col = "0"
        n_drugs_join = ""
    query = f"""
    WITH qual AS (
        SELECT patient_id, {q_cols},
               bit_or(CASE site {site_case} END) FILTER (WHERE severity >= {base}) AS site_mask
        FROM pain_episodes
        WHERE site IN ({_sql_list(sites)}) AND cause IN ({_sql_list(params.pain_causes)})
          AND date BETWEEN DATE '{ws}' AND DATE '{idx}'
          AND severity >= {min(sev)}
        GROUP BY patient_id),
    cond AS (
        SELECT d.patient_id, bit_or(m.mask) AS cond_mask
        FROM diagnoses d JOIN cond_map m ON d.code = m.code
        WHERE d.date <= DATE '{idx}'
        GROUP BY d.patient_id),
    rx AS (
        SELECT r.patient_id, bit_or(m.mask) AS drug_mask
        FROM prescriptions r JOIN drug_map m ON r.atc_code = m.code
        WHERE r.date <= DATE '{idx}'
        GROUP BY r.patient_id),
    nd AS ({n_drugs_sql}),
    prof AS (
        SELECT
          {params.index.year} - year(p.birth_date)
            - CAST(month(p.birth_date) * 100 + day(p.birth_date)
                   > {params.index.month * 100 + params.index.day} AS INTEGER) AS age,
          p.sex,
          {q_sel},
          coalesce(q.site_mask, 0) AS site_mask,
          coalesce(c.cond_mask, 0) AS cond_mask,
          coalesce(r.drug_mask, 0) AS drug_mask,
          {n_drugs_col} AS n_drugs
        FROM patients p
        LEFT JOIN qual q ON q.patient_id = p.patient_id
        LEFT JOIN cond c ON c.patient_id = p.patient_id
        LEFT JOIN rx r ON r.patient_id = p.patient_id
        {n_drugs_join})
    SELECT age, sex, {q_grp}, site_mask, cond_mask, drug_mask,
           count(*) AS n, sum(n_drugs) AS drugs_sum, sum(n_drugs * n_drugs) AS drugs_sq
    FROM prof
    GROUP BY ALL
    ORDER BY ALL
    """
    cells = db.con.execute(query).df()
    for col in cells.columns:
        if col != "sex":
            cells[col] = cells[col].astype(np.int64)
    return ProfileCube(cells=cells, params=params, severities=sev, episode_cap=cap,
                       condition_lists=cond_lists, drug_lists=drug_lists, sites=sites,
                       data_label=db.label, is_synthetic=db.is_synthetic, drug_counts=drug_counts)


# ----------------------------------------------------------------------------- attrition
def attrition_table(cube: ProfileCube, params: Params | None = None) -> pd.DataFrame:
    """From all patients to the expected candidates for a local treatment.

    Columns: ``step``, ``definition``, ``n``, ``of`` (the step it is a share of),
    ``pct_of_step`` (share of that step, %), ``pct_of_previous`` (share of the step above,
    %), ``pct_of_all`` (%). The target subgroup is drawn from the pain cohort (a risk
    condition *or a risk drug*), so its ``of`` step is the pain cohort, as in the paper's
    "14.63% of patients with ... localized pain"; its ``pct_of_previous`` is still shown.
    The last step is an expectation (target x benefit fraction), not a count.
    """
    p = params or cube.params
    f = cube.flags(p)
    n_all = cube.n_total
    n_pain = cube.count(f["pain"])
    n_pr = cube.count(f["pain_risk"])
    n_t = cube.count(f["target"])
    cand = n_t * p.benefit_fraction
    rows = [
        ("all_patients", "every patient in the database", n_all, None),
        ("pain", "one or more qualifying episodes of moderate or severe osteo-articular "
                 f"pain of the {', '.join(p.pain_sites)} in the window", n_pain, "all_patients"),
        ("pain_risk_condition", "pain cohort with a history of a risk condition", n_pr, "pain"),
        ("target", f"pain cohort, recurrent (>= {p.min_episodes} episodes), aged >= "
                   f"{p.elderly_age}, with a risk condition or a risk drug", n_t, "pain"),
        ("candidates", f"target subgroup x benefit fraction {p.benefit_fraction:g} "
                       "(expected)", cand, "target"),
    ]
    n_of = {r[0]: r[2] for r in rows}
    out = []
    prev = None
    for step, definition, n, of in rows:
        out.append({
            "step": step,
            "definition": definition,
            "n": n,
            "of": of or "",
            "pct_of_step": 100.0 * n / n_of[of] if of and n_of[of] else (100.0 if not of else np.nan),
            "pct_of_previous": 100.0 * n / prev if prev else (100.0 if prev is None else np.nan),
            "pct_of_all": 100.0 * n / n_all if n_all else np.nan,
        })
        prev = n
    return pd.DataFrame(out)
