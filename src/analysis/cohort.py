"""Cohort definitions: per-patient flags, computed in one pass in the engine.

Definitions (the paper's, with the defaults of :class:`analysis.params.Params`):

* **Population** (``population``, default ``registered_in_window``): patients registered on
  or before the index date and not deregistered before the first day of the look-back
  window (the paper's "patients treated in the last 10 years"); or registered on the index
  date (``registered_on_index_date``); or every patient (``all_patients``). A patient
  born after the index date is never in the population; events of patients outside it
  never count (the cube holds the population only; :func:`population_counts` says who
  was left out and why).
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

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from analysis import cube_store
from analysis.codelists import load_codelist
from analysis.data import Database
from analysis.eligibility import benefit_mean
from analysis.engines import create_temp_table, sql_list, sql_literal
from analysis.params import Params


@dataclass
class ProfileCube:
    """Counts of patients by age, sex and cohort features (see module docstring).

    ``columns``: one numpy array per column (age, sex, q<s>..., site_mask, cond_mask,
    drug_mask, n, drugs_sum, drugs_sq, with_drugs: patients with at least one drug), one
    element per cell; ``cells`` is the same as a
    pandas DataFrame, built on first use (the figures summary never needs pandas).
    """

    columns: dict
    params: Params
    severities: tuple[int, ...]
    episode_cap: int
    condition_lists: tuple[str, ...]
    drug_lists: tuple[str, ...]
    sites: tuple[str, ...]
    data_label: str = "data"
    is_synthetic: bool = False
    drug_counts: bool = False  # whether drugs_sum / drugs_sq hold the number of drugs
    detail: bool = True  # False: no pain sites, risk groups collapsed to "any" (figures only)
    top_age: int | None = None  # ages above it were counted as it (disclosure control)
    population: dict | None = None  # population_counts(): the database and who was left out
    notes: tuple = ()  # what the definitions cannot see (codes of another vocabulary, unmapped)
    practice_ids: tuple = ()  # the practice stratum: the id of each practice_code (0, 1, ...)
    practices: ProfileCube | None = None  # the practice stratum (see profile_cube)
    own_params_only: bool = False  # the practice stratum answers its parameter set only

    def __post_init__(self):
        if not isinstance(self.columns, dict):  # a DataFrame
            self.columns = {c: self.columns[c].to_numpy() for c in self.columns.columns}

    @cached_property
    def cells(self):
        import pandas as pd

        return pd.DataFrame(self.columns)

    def top_coded(self, age: int) -> ProfileCube:
        """The same cube with every age above ``age`` counted as ``age`` (cells are not
        merged: every statistic sums over cells)."""
        cols = dict(self.columns)
        cols["age"] = np.minimum(np.asarray(cols["age"]), age)
        return dataclasses.replace(self, columns=cols, top_age=age)

    @property
    def n_total(self) -> int:
        return int(self.columns["n"].sum())

    # ---- masks ------------------------------------------------------------------
    def condition_bits(self, lists=None) -> int:
        lists = self.params.risk_conditions if lists is None else lists
        return sum(1 << self.condition_lists.index(x) for x in lists)

    def drug_bits(self, lists=None) -> int:
        lists = self.params.risk_drugs if lists is None else lists
        return sum(1 << self.drug_lists.index(x) for x in lists)

    def flag_arrays(self, params: Params | None = None) -> dict[str, np.ndarray]:
        """Boolean flags for every cell, under ``params`` (default: the cube's)."""
        p = params or self.params
        if self.own_params_only and any(
            getattr(p, k) != getattr(self.params, k) for k in _STRATUM_PARAMS
        ):
            raise ValueError("the practice stratum answers only its own parameter set")
        if not self.detail and (
            tuple(p.risk_conditions) != tuple(self.params.risk_conditions)
            or tuple(p.risk_drugs) != tuple(self.params.risk_drugs)
        ):
            raise ValueError("a cube built with detail=False answers only its own code lists")
        c = self.columns
        q = c[f"q{p.min_severity}"]
        f = {
            "pain": q >= 1,
            "recurrent": q >= p.min_episodes,
            "risk_condition": (c["cond_mask"] & self.condition_bits(p.risk_conditions)) != 0,
            "risk_drug": (c["drug_mask"] & self.drug_bits(p.risk_drugs)) != 0,
            "elderly": c["age"] >= p.elderly_age,
        }
        f["pain_risk"] = f["pain"] & f["risk_condition"]
        f["target"] = (
            f["pain"] & f["recurrent"] & f["elderly"] & (f["risk_condition"] | f["risk_drug"])
        )
        return f

    def flags(self, params: Params | None = None):
        """The flags as a pandas DataFrame aligned with ``cells``."""
        import pandas as pd

        return pd.DataFrame(self.flag_arrays(params), index=self.cells.index)

    def count(self, mask) -> int:
        return int(self.columns["n"][np.asarray(mask, dtype=bool)].sum())


# what the practice stratum's cells are coarsened by (flag_arrays refuses others)
_STRATUM_PARAMS = ("min_severity", "min_episodes", "elderly_age", "risk_conditions", "risk_drugs")


def _code_map_sql(
    db: Database, table: str, column: str, lists, name: str, vocabulary: str
) -> list[str]:
    """A small table code -> bit mask for every distinct code of ``table`` that matches a
    list (prefix match, dots ignored), so that the big table joins on equality. A list of
    another vocabulary than the table's codes matches nothing; their names are returned."""
    rows, other = [], []
    for bit, cl_name in enumerate(lists):
        cl = load_codelist(cl_name)
        if cl.vocabulary != vocabulary:
            other.append(f"{cl_name} ({cl.vocabulary})")
            continue
        rows.extend((bit, prefix) for prefix in cl.codes)

    if rows:
        values = ", ".join(f"({bit}, {sql_literal(prefix)})" for bit, prefix in rows)
        create_temp_table(
            db.con, f"{name}_prefix", f"SELECT * FROM (VALUES {values}) AS t(bit, prefix)"
        )
    else:
        create_temp_table(
            db.con,
            f"{name}_prefix",
            "SELECT CAST(NULL AS INTEGER) AS bit, CAST(NULL AS VARCHAR) AS prefix WHERE 1 = 0",
        )
    create_temp_table(
        db.con,
        name,
        f"""
        WITH codes AS (SELECT DISTINCT {column} AS code FROM {table})
        SELECT code, CAST(bit_or(CAST(1 AS BIGINT) << p.bit) AS BIGINT) AS mask
        FROM codes JOIN {name}_prefix p
          ON starts_with(upper(replace(trim(code), '.', '')), p.prefix)
        GROUP BY code""",
    )
    return other


def registered_events_sql(params: Params, alias: str = "e") -> str:
    """The condition that an event ``alias`` lies within its patient's registration, as an
    ``AND ...`` to append to a WHERE clause; empty when events outside count (the default,
    so the query is the same as without the parameter)."""
    if params.events_outside_registration == "count":
        return ""
    return (
        f" AND EXISTS (SELECT 1 FROM patients rp WHERE rp.patient_id = {alias}.patient_id "
        f"AND {alias}.date >= rp.registered_from "
        f"AND (rp.registered_to IS NULL OR {alias}.date <= rp.registered_to))"
    )


def population_condition(params: Params, alias: str = "p") -> str:
    """SQL condition (on the patients table as ``alias``) of the population (module docstring)."""
    idx, ws = params.index.isoformat(), params.window_start.isoformat()
    cond = [f"{alias}.birth_date <= DATE '{idx}'"]
    if params.population == "registered_in_window":
        cond += [
            f"{alias}.registered_from <= DATE '{idx}'",
            f"({alias}.registered_to IS NULL OR {alias}.registered_to >= DATE '{ws}')",
        ]
    elif params.population == "registered_on_index_date":
        cond += [
            f"{alias}.registered_from <= DATE '{idx}'",
            f"({alias}.registered_to IS NULL OR {alias}.registered_to >= DATE '{idx}')",
        ]
    return " AND ".join(cond)


def registration_condition(params: Params, alias: str = "p") -> str:
    """The registration part of the population (TRUE for ``all_patients``)."""
    parts = population_condition(params, alias).split(" AND ", 1)
    return parts[1] if len(parts) > 1 else "TRUE"


def population_counts(db: Database, params: Params) -> dict:
    """Every patient of the database, and those the population leaves out by reason (in
    this order: born after the index date; then not registered as the definition asks)."""
    idx = params.index.isoformat()
    total, born_after, unregistered = db.con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE p.birth_date > DATE '{idx}'), "
        f"count(*) FILTER (WHERE p.birth_date <= DATE '{idx}' AND NOT "
        f"({registration_condition(params)})) "
        "FROM patients p"
    ).fetchone()
    return {
        "database": int(total),
        "born_after_index": int(born_after),
        "not_registered": int(unregistered),
    }


def profile_cube(
    db: Database,
    params: Params,
    *,
    severities=(),
    episode_cap: int | None = None,
    condition_lists=None,
    drug_lists=None,
    drug_counts: bool = False,
    detail: bool = True,
    by_practice: bool = False,
) -> ProfileCube:
    """Reduce the database to the profile cube, in one pass over each table.

    ``severities`` adds severity thresholds (beyond ``params.min_severity``) and
    ``episode_cap`` the largest recurrence threshold the caller will ask about, so that a
    whole sensitivity grid is answered from the same cube. ``drug_counts`` adds the
    number of distinct ATC codes prescribed in the window (for Table 1; it costs a
    distinct count over every prescription). ``detail=False`` leaves out the pain sites and
    collapses the risk groups to "any of the parameter set's lists": enough for the
    figures summary, with far fewer cells. ``by_practice`` adds the practice as a stratum
    beside the cells (``practices``, a cube of its own: see :func:`_practice_stratum_sql`):
    every practice's counts from the same single pass.
    """
    sev = tuple(sorted({params.min_severity, *severities}))
    cap = max(params.min_episodes, episode_cap or 0)
    cond_lists = tuple(condition_lists or params.risk_conditions)
    cond_lists += tuple(dict.fromkeys(x for x in params.risk_conditions if x not in cond_lists))
    drug_lists = tuple(drug_lists or params.risk_drugs)
    sites = tuple(params.pain_sites)
    idx = params.index.isoformat()
    ws = params.window_start.isoformat()
    notes = _code_maps(db, cond_lists, drug_lists) + list(db.import_notes)
    site_case = " ".join(f"WHEN '{s}' THEN {1 << i}" for i, s in enumerate(sites))
    q_cols = ", ".join(
        f"least(count(*) FILTER (WHERE severity >= {s}), {cap}) AS q{s}" for s in sev
    )
    q_sel = ", ".join(f"coalesce(q.q{s}, 0) AS q{s}" for s in sev)
    q_grp = ", ".join(f"q{s}" for s in sev)
    base = params.min_severity
    cells_sql = f"""
    SELECT age, sex, {q_grp}, site_mask, cond_mask, drug_mask,
           count(*) AS n, sum(n_drugs) AS drugs_sum, sum(n_drugs * n_drugs) AS drugs_sq,
           count(*) FILTER (WHERE n_drugs > 0) AS with_drugs, in_population
    FROM prof
    GROUP BY age, sex, {q_grp}, site_mask, cond_mask, drug_mask, in_population
    ORDER BY age, sex, {q_grp}, site_mask, cond_mask, drug_mask, in_population"""
    practice_column = practice_join = ""
    if by_practice:
        cells_sql, practice_column, practice_join = _practice_stratum_sql(
            db, params, cond_lists, drug_lists, q_grp
        )
    n_drugs_sql, n_drugs_col, n_drugs_join = _n_drugs_sql(params, drug_counts)
    site_col, cond_col, drug_col = _mask_columns(params, detail, cond_lists, drug_lists)
    registered = registered_events_sql(params)
    query = f"""
    WITH qual AS (
        SELECT patient_id, {q_cols},
               bit_or(CASE site {site_case} END) FILTER (WHERE severity >= {base}) AS site_mask
        FROM pain_episodes e
        WHERE site IN ({sql_list(sites)}){registered} AND cause IN ({sql_list(params.pain_causes)})
          AND date BETWEEN DATE '{ws}' AND DATE '{idx}'
          AND severity >= {min(sev)}
        GROUP BY patient_id),
    cond AS (
        SELECT e.patient_id, bit_or(m.mask) AS cond_mask
        FROM diagnoses e JOIN cond_map m ON e.code = m.code
        WHERE e.date <= DATE '{idx}'{registered}
        GROUP BY e.patient_id),
    rx AS (
        SELECT e.patient_id, bit_or(m.mask) AS drug_mask
        FROM prescriptions e JOIN drug_map m ON e.atc_code = m.code
        WHERE e.date <= DATE '{idx}'{registered}
        GROUP BY e.patient_id),
    nd AS ({n_drugs_sql}),
    prof AS (
        SELECT
          {params.index.year} - CAST(EXTRACT(YEAR FROM p.birth_date) AS INTEGER)
            - CAST(CAST(EXTRACT(MONTH FROM p.birth_date) AS INTEGER) * 100
                   + CAST(EXTRACT(DAY FROM p.birth_date) AS INTEGER)
                   > {params.index.month * 100 + params.index.day} AS INTEGER) AS age,
          p.sex,{practice_column}
          {q_sel},
          {site_col} AS site_mask,
          {cond_col} AS cond_mask,
          {drug_col} AS drug_mask,
          {n_drugs_col} AS n_drugs,
          {population_condition(params)} AS in_population
        FROM patients p
        LEFT JOIN qual q ON q.patient_id = p.patient_id
        LEFT JOIN cond c ON c.patient_id = p.patient_id
        LEFT JOIN rx r ON r.patient_id = p.patient_id
        {practice_join}
        {n_drugs_join})
    {cells_sql}
    """
    raw = _cube_columns(db, query, by_practice)
    return _cube(raw, db, params, sev, cap, cond_lists, drug_lists, sites, drug_counts, detail,
                 notes, by_practice)  # fmt: skip


def _cube_columns(db: Database, query: str, by_practice: bool) -> dict:
    """The cube query's columns: from the batch's store when a run before asked the same
    query of the same files (:mod:`analysis.cube_store`), else from the engine (then
    stored). The key holds what decides the result: the files' content, the query's text,
    the temporary tables it joins (code maps, practice map) and the engine's version."""
    store = cube_store.folder()
    if store is None or db.url:
        return db.con.execute(query).fetchnumpy()
    import duckdb

    maps = ["cond_map", "drug_map"] + (["practice_map"] if by_practice else [])
    digest = cube_store.key(
        {
            "files": db.fingerprint(),
            "query": query,
            "maps": {t: db.con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in maps},
            "duckdb": duckdb.__version__,
        }
    )
    raw = cube_store.load(store, digest)
    if raw is None:
        raw = db.con.execute(query).fetchnumpy()
        cube_store.save(store, digest, raw)
    return raw


def _cube(raw, db, params, sev, cap, cond_lists, drug_lists, sites, drug_counts, detail, notes,
          by_practice) -> ProfileCube:  # fmt: skip
    """The profile cube from the query's columns: the cells of the population (the
    population is a column of the grouping, dropped here: a filter in the query changes
    DuckDB's join plan and doubles its peak memory at 10 million patients), and the
    practices' stratum."""
    keep = np.asarray(raw.pop("in_population"), dtype=bool)
    raw = {k: np.asarray(v)[keep] for k, v in raw.items()}
    excluded = population_counts(db, params)
    stratum = _practice_stratum(db, params, raw) if by_practice else None
    cells = {
        k: (np.asarray(v, dtype=object) if k == "sex" else np.asarray(v, dtype=np.int64))
        for k, v in raw.items()
    }
    cube = ProfileCube(
        columns=cells,
        params=params,
        severities=sev,
        episode_cap=cap,
        condition_lists=cond_lists,
        drug_lists=drug_lists,
        sites=sites,
        data_label=db.label,
        is_synthetic=db.is_synthetic,
        drug_counts=drug_counts,
        detail=detail,
        population=excluded,
        notes=tuple(notes),
    )
    if stratum is None:
        return cube
    columns, ids = stratum
    practices = dataclasses.replace(
        cube,
        columns=columns,
        severities=(params.min_severity,),
        detail=False,
        drug_counts=False,
        practice_ids=ids,
        own_params_only=True,
    )
    return dataclasses.replace(cube, practices=practices)


def _code_maps(db: Database, cond_lists, drug_lists) -> list[str]:
    """The code lists as the temporary tables ``cond_map`` and ``drug_map`` (code -> the
    bit of its list); notes for lists of a vocabulary the data do not use."""
    vocab = db.diagnosis_vocabulary
    notes = []
    other = _code_map_sql(db, "diagnoses", "code", cond_lists, "cond_map", vocab)
    if other:
        notes.append(
            f"the diagnoses are coded in {vocab}: the code list(s) {', '.join(other)} of another "
            "vocabulary match none of them, so the risk definitions see none of those conditions"
        )
    other = _code_map_sql(db, "prescriptions", "atc_code", drug_lists, "drug_map", "ATC")
    if other:
        notes.append(
            f"prescriptions are ATC-coded: the list(s) {', '.join(other)} match none of them"
        )
    return notes


def _n_drugs_sql(params: Params, drug_counts: bool):
    """(the ``nd`` CTE, its column, its join): distinct ATC codes prescribed in the window
    per patient, or nothing when not asked (it costs a distinct count)."""
    if not drug_counts:
        return "SELECT CAST(NULL AS BIGINT) AS patient_id, 0 AS n_drugs WHERE FALSE", "0", ""
    idx, ws = params.index.isoformat(), params.window_start.isoformat()
    sql = (
        f"SELECT patient_id, count(*) AS n_drugs FROM (SELECT DISTINCT patient_id, atc_code "
        f"FROM prescriptions e WHERE date BETWEEN DATE '{ws}' AND DATE '{idx}'"
        f"{registered_events_sql(params)}) AS "
        f"distinct_drugs "
        "GROUP BY patient_id"
    )
    return sql, "coalesce(nd.n_drugs, 0)", "LEFT JOIN nd ON nd.patient_id = p.patient_id"


def _mask_columns(params: Params, detail: bool, cond_lists, drug_lists):
    """The site, condition and drug mask columns: every list's bit, or (``detail`` False)
    one bit for "any of the parameter set's lists" and no sites."""
    if detail:
        return "coalesce(q.site_mask, 0)", "coalesce(c.cond_mask, 0)", "coalesce(r.drug_mask, 0)"
    cb = sum(1 << cond_lists.index(x) for x in params.risk_conditions)
    db_ = sum(1 << drug_lists.index(x) for x in params.risk_drugs)
    return (
        "0",
        f"CASE WHEN coalesce(c.cond_mask, 0) & {cb} <> 0 THEN {cb} ELSE 0 END",
        f"CASE WHEN coalesce(r.drug_mask, 0) & {db_} <> 0 THEN {db_} ELSE 0 END",
    )


def _practice_stratum_sql(db: Database, params: Params, cond_lists, drug_lists, q_grp: str):
    """The cube query's grouping with the practice stratum beside the cells, in one pass
    (``GROUPING SETS``): per practice, the cells are coarsened to what the target subgroup
    needs under ``params`` (age below or from ``elderly_age``; the qualifying-episode count
    at ``min_severity``; any risk condition, any risk drug), so that 2,000 practices add
    tens of thousands of cells, not millions. The practice is an integer code (a small map
    code -> id): a string per cell costs more than its counts. Returns the grouping query,
    the select column and the join that bring the code into ``prof``."""

    create_temp_table(
        db.con,
        "practice_map",
        "SELECT practice_id, CAST(row_number() OVER (ORDER BY practice_id) - 1 AS INTEGER) "
        "AS practice_code FROM (SELECT DISTINCT practice_id FROM patients) AS ids",
    )
    ea, base = params.elderly_age, params.min_severity
    cb = sum(1 << cond_lists.index(x) for x in params.risk_conditions)
    db_ = sum(1 << drug_lists.index(x) for x in params.risk_drugs)
    cells = f"""
    , strata AS (
        SELECT *,
          CASE WHEN age >= {ea} THEN {ea} ELSE {ea - 1} END AS practice_age,
          CASE WHEN cond_mask & {cb} <> 0 THEN {cb} ELSE 0 END AS practice_cond,
          CASE WHEN drug_mask & {db_} <> 0 THEN {db_} ELSE 0 END AS practice_drug
        FROM prof)
    SELECT age, sex, {q_grp}, site_mask, cond_mask, drug_mask,
           count(*) AS n, sum(n_drugs) AS drugs_sum, sum(n_drugs * n_drugs) AS drugs_sq,
           count(*) FILTER (WHERE n_drugs > 0) AS with_drugs, in_population,
           practice_code, practice_age, practice_cond, practice_drug,
           GROUPING(practice_code) AS whole
    FROM strata
    GROUP BY GROUPING SETS (
        (age, sex, {q_grp}, site_mask, cond_mask, drug_mask, in_population),
        (practice_code, practice_age, q{base}, practice_cond, practice_drug, in_population))
    ORDER BY whole, practice_code, practice_age, practice_cond, practice_drug,
             age, sex, {q_grp}, site_mask, cond_mask, drug_mask, in_population"""
    return cells, " pm.practice_code,", "JOIN practice_map pm ON pm.practice_id = p.practice_id"


def _practice_stratum(db, params, raw: dict) -> tuple[dict, tuple]:
    """Split the rows of :func:`_practice_stratum_sql` (in place): ``raw`` keeps the
    cells; returns the practice rows' columns and the practice ids by code."""
    whole = np.asarray(raw.pop("whole")) != 0
    part = {k: raw.pop(k)[~whole] for k in list(raw) if k.startswith("practice_")}
    base = f"q{params.min_severity}"
    columns = {
        "practice_code": part["practice_code"],
        "age": part["practice_age"],
        base: raw[base][~whole],
        "cond_mask": part["practice_cond"],
        "drug_mask": part["practice_drug"],
        "n": raw["n"][~whole],
    }
    for k in list(raw):
        raw[k] = raw[k][whole]
    pairs = db.con.execute("SELECT practice_code, practice_id FROM practice_map").fetchall()
    return (
        {k: np.asarray(v, dtype=np.int64) for k, v in columns.items()},
        tuple(str(i) for _, i in sorted(pairs)),
    )


def nested_groups(cube: ProfileCube, params: Params) -> tuple[dict, dict]:
    """The groups of patients whose counts the figures release (containing groups first)
    and, for each, the groups that contain it: for disclosure control, as the difference of
    a group and one that contains it is a group too
    (:func:`analysis.outputs.disclosure.nested_withheld`)."""
    f, c = cube.flag_arrays(params), cube.columns
    female = cube.count(c["sex"] == "F")
    groups = {
        "population": cube.n_total,
        "female": female,
        "male": cube.n_total - female,  # follows from the two above
        "elderly": cube.count(f["elderly"]),
        "pain": cube.count(f["pain"]),
        "pain_male": cube.count(f["pain"] & (c["sex"] == "M")),
        "pain_recurrent": cube.count(f["pain"] & f["recurrent"]),
        "pain_elderly": cube.count(f["pain"] & f["elderly"]),
        "pain_risk": cube.count(f["pain_risk"]),
        "pain_risk_drug": cube.count(f["pain"] & f["risk_drug"]),
        "target": cube.count(f["target"]),
    }
    parents = {
        "female": ("population",),
        "male": ("population",),
        "elderly": ("population",),
        "pain": ("population",),
        "pain_male": ("pain", "male"),
        "pain_recurrent": ("pain",),
        "pain_elderly": ("pain", "elderly"),
        "pain_risk": ("pain",),
        "pain_risk_drug": ("pain",),
        "target": ("pain_recurrent", "pain_elderly"),
    }
    return groups, parents


# ----------------------------------------------------------------------------- words
def _long_date(d) -> str:
    return f"{d.day} {d.strftime('%B')} {d.year}"


def registration_words(p: Params) -> str:
    """The registration condition of the population, in words."""
    idx, ws = _long_date(p.index), _long_date(p.window_start)
    if p.population == "registered_in_window":
        return f"registered at any time between {ws} and {idx}"
    if p.population == "registered_on_index_date":
        return f"registered on {idx}"
    return "restricted by registration (every patient of the extract)"


def population_words(p: Params) -> str:
    """The population definition in words, as a methods section would print it."""
    born = f"born on or before {_long_date(p.index)}"
    if p.population == "all_patients":
        return f"every patient of the extract {born}"
    return f"patients {registration_words(p)}, {born}"


def pain_words(p: Params) -> str:
    """The qualifying pain episode in words, from the parameters (not the paper's defaults)."""
    sev = {4: "moderate or severe", 7: "severe"}.get(
        p.min_severity, f"severity {p.min_severity} or more"
    )
    if p.min_severity < 4:
        sev = f"severity {p.min_severity} or more (mild included)"
    causes = " or ".join(c.replace("osteoarticular", "osteo-articular") for c in p.pain_causes)
    sites = (
        ", ".join(p.pain_sites[:-1]) + (" or " if len(p.pain_sites) > 1 else "") + p.pain_sites[-1]
    )
    return f"{sev} ({p.min_severity}+/10) {causes} pain of the {sites}"


def target_words(p: Params) -> str:
    """The target subgroup in words, with its thresholds."""
    return (
        f"pain cohort, recurrent (>= {p.min_episodes} qualifying episodes), aged >= "
        f"{p.elderly_age}, with a risk condition or a risk drug"
    )


# ----------------------------------------------------------------------------- attrition
def attrition_table(cube: ProfileCube, params: Params | None = None):
    """From all patients to the expected candidates for a local treatment.

    Columns: ``step``, ``definition``, ``n``, ``previous_step`` (the step it is drawn
    from), ``pct_of_previous`` (its share of that step, %) and ``pct_of_all`` (%). The
    steps form a tree, not a chain: the pain cohort with a risk condition and the target
    subgroup are both drawn from the pain cohort (the target through a risk condition *or a
    risk drug*), as in the paper's "14.63% of patients with ... localized pain". The last
    step is an expectation (target x benefit fraction), not a count.
    """

    p = params or cube.params
    f = cube.flag_arrays(p)
    n_all = cube.n_total
    n_pain = cube.count(f["pain"])
    n_pr = cube.count(f["pain_risk"])
    n_t = cube.count(f["target"])
    fraction = benefit_mean(p)
    cand = n_t * fraction
    rows = []
    pop = cube.population
    if pop is not None:
        rows += [
            ("database", "every patient in the database", pop["database"], ""),
            (
                "excluded_born_after_index",
                f"left out: born after the index date ({p.index_date})",
                pop["born_after_index"],
                "database",
            ),
            (
                "excluded_not_registered",
                f"left out: not {registration_words(p)}",
                pop["not_registered"],
                "database",
            ),
        ]
    rows += [
        ("all_patients", population_words(p), n_all, "database" if pop is not None else ""),
        (
            "pain",
            f"one or more qualifying episodes of {pain_words(p)} in the window",
            n_pain,
            "all_patients",
        ),
        ("pain_risk_condition", "pain cohort with a history of a risk condition", n_pr, "pain"),
        (
            "target",
            target_words(p),
            n_t,
            "pain",
        ),
        (
            "candidates",
            f"target subgroup x benefit fraction {fraction:g} "
            f"({'fixed' if p.benefit_distribution == 'fixed' else 'expected'}; expected count)",
            cand,
            "target",
        ),
    ]
    n_of = {r[0]: r[2] for r in rows}
    out = []
    for step, definition, n, prev in rows:
        outside = step == "database" or step.startswith("excluded_")
        out.append(
            {
                "step": step,
                "definition": definition,
                "n": n,
                "previous_step": prev,
                "pct_of_previous": (100.0 * n / n_of[prev] if n_of[prev] else math.nan)
                if prev
                else 100.0,
                "pct_of_all": math.nan if outside else (100.0 * n / n_all if n_all else math.nan),
            }
        )
    import pandas as pd

    return pd.DataFrame(out)
