"""Descriptive statistics with confidence intervals, all derived from the profile cube.

Every proportion carries its interval; every mean its t interval. Means, SDs, medians and
quartiles are exact: ages are integers (completed years), so the frequency table by age is
the whole distribution.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.cohort import ProfileCube
from analysis.estimates import (  # noqa: F401  (re-exported: the statistics API)
    METHOD_LABEL,
    AgeSummary,
    Proportion,
    age_summary_from_counts,
    age_summary_masked,
    proportion,
    proportion_ci,
)
from analysis.firth import FirthNotConverged, firth_logit
from analysis.params import Params


def age_summary(cube: ProfileCube, mask=None, level: float | None = None) -> AgeSummary:
    c = cube.cells if mask is None else cube.cells.loc[mask]
    by_age = c.groupby("age")["n"].sum()
    return age_summary_from_counts(
        by_age.index.values, by_age.values, level or cube.params.confidence_level
    )


def age_bands(params: Params) -> list[tuple[str, int, int | None]]:
    """(label, lower, upper or None) of the age bands, in completed years."""
    edges = list(params.age_band_edges)
    out = [(f"<{edges[0]}", 0, edges[0] - 1)]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        out.append((f"{lo}-{hi - 1}", lo, hi - 1))
    out.append((f">={edges[-1]}", edges[-1], None))
    return out


def band_of(ages: pd.Series, params: Params) -> pd.Series:
    labels = [b[0] for b in age_bands(params)]
    bins = [-1] + [e - 1 for e in params.age_band_edges] + [10_000]
    return pd.cut(ages, bins=bins, labels=labels).astype(str)


def age_table(cube: ProfileCube, mask=None) -> pd.DataFrame:
    """Age summary overall, by sex and by age band (rows), for the patients in ``mask``."""
    c = cube.cells if mask is None else cube.cells.loc[mask]
    rows = [{"group": "all", **age_summary(cube, c.index).as_dict()}]
    for sex in ("F", "M"):
        rows.append(
            {"group": f"sex={sex}", **age_summary(cube, c.index[c["sex"] == sex]).as_dict()}
        )
    bands = band_of(c["age"], cube.params)
    for label, *_ in age_bands(cube.params):
        rows.append(
            {"group": f"age {label}", **age_summary(cube, c.index[bands == label]).as_dict()}
        )
    return pd.DataFrame(rows)


def sex_table(cube: ProfileCube, mask=None) -> pd.DataFrame:
    """Female and male counts with their share and interval (percent)."""
    c = cube.cells if mask is None else cube.cells.loc[mask]
    n = int(c["n"].sum())
    rows = []
    for sex, label in (("F", "female"), ("M", "male")):
        pr = proportion(int(c.loc[c["sex"] == sex, "n"].sum()), n, cube.params)
        rows.append({"sex": label, **pr.as_dict()})
    return pd.DataFrame(rows)


def age_sex_counts(cube: ProfileCube, mask=None, width: int = 5) -> pd.DataFrame:
    """Patients by age group of ``width`` years and sex (for the age-sex pyramid)."""
    c = cube.cells if mask is None else cube.cells.loc[mask]
    lo = (c["age"] // width) * width
    t = c.assign(group_lo=lo).pivot_table(
        index="group_lo", columns="sex", values="n", aggfunc="sum", fill_value=0
    )
    for s in ("F", "M"):
        if s not in t.columns:
            t[s] = 0
    t = t[["F", "M"]].reset_index()
    t["age_group"] = t["group_lo"].map(lambda a: f"{a}-{a + width - 1}")
    t.columns.name = None
    return t[["age_group", "group_lo", "F", "M"]].rename(columns={"F": "female", "M": "male"})


def age_by_sex_counts(cube: ProfileCube) -> pd.DataFrame:
    """Patients by sex and single year of age (completed years at the index date); only
    ages where patients are appear."""
    return cube.cells.groupby(["sex", "age"], as_index=False)["n"].sum()


# ----------------------------------------------------------------------------- table one
def smd_continuous(m1, s1, m2, s2) -> float:
    """Standardized mean difference (m1 - m2) / sqrt((s1^2 + s2^2) / 2) (Austin 2009)."""
    den = math.sqrt((s1**2 + s2**2) / 2)
    return (m1 - m2) / den if den > 0 else math.nan


def smd_binary(p1, p2) -> float:
    """Standardized difference of two proportions (0-1) (Austin 2009, eq. 2)."""
    den = math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2)
    return (p1 - p2) / den if den > 0 else math.nan


def _mean_sd(total_n, s, ss):
    if total_n == 0:
        return math.nan, math.nan
    m = s / total_n
    var = (ss - total_n * m * m) / (total_n - 1) if total_n > 1 else math.nan
    return m, math.sqrt(max(var, 0.0)) if total_n > 1 else math.nan


def table_one(cube: ProfileCube, params: Params | None = None) -> pd.DataFrame:
    """Table 1: the pain cohort against the rest of the population.

    Rows: patients, age (mean, SD), female, each risk-condition group, any risk drug, number
    of drugs (distinct ATC codes prescribed in the window; mean, SD). Columns per group:
    ``value`` (count or mean), ``pct_or_sd``, interval (percent, or for means the t
    interval), and ``smd``: the standardized mean difference pain - rest (Austin 2009).
    """
    _need_detail(cube)
    p = params or cube.params
    f = cube.flags(p)
    c = cube.cells
    groups = {"pain": f["pain"], "rest": ~f["pain"]}
    rows = []

    def add(variable, kind, stats):
        row = {"variable": variable, "kind": kind}
        for g, v in stats.items():
            for k, val in v.items():
                row[f"{g}_{k}"] = val
        if kind == "binary":
            row["smd"] = smd_binary(stats["pain"]["pct"] / 100, stats["rest"]["pct"] / 100)
        elif kind == "continuous":
            row["smd"] = smd_continuous(
                stats["pain"]["mean"],
                stats["pain"]["sd"],
                stats["rest"]["mean"],
                stats["rest"]["sd"],
            )
        else:
            row["smd"] = math.nan
        rows.append(row)

    ns = {g: int(c.loc[m, "n"].sum()) for g, m in groups.items()}
    add("patients, n", "count", {g: {"n": ns[g]} for g in groups})
    st = {}
    for g, m in groups.items():
        a = age_summary(cube, c.index[m], p.confidence_level)
        st[g] = {"mean": a.mean, "sd": a.sd, "ci_low": a.mean_ci_low, "ci_high": a.mean_ci_high}
    add("age, years", "continuous", st)

    def binary(label, flag):
        st = {}
        for g, m in groups.items():
            pr = proportion(int(c.loc[m & flag, "n"].sum()), ns[g], p)
            st[g] = {"n": pr.numerator, "pct": pr.pct, "ci_low": pr.ci_low, "ci_high": pr.ci_high}
        add(label, "binary", st)

    binary("female", c["sex"] == "F")
    binary(f"aged >= {p.elderly_age}", f["elderly"])
    binary("any risk condition", f["risk_condition"])
    for name in p.risk_conditions:
        bit = cube.condition_bits([name])
        binary(condition_label(name), (c["cond_mask"] & bit) != 0)
    binary("any risk drug", f["risk_drug"])
    # the counts a continuous statistic rests on, each of which must be releasable: the
    # group for ages; those with and those without a drug for the number of drugs (a
    # mean of 0.01 tells that very few patients have one)
    support = {"age, years": {g: (ns[g],) for g in groups}}
    if cube.drug_counts:
        st = {}
        for g, m in groups.items():
            mean, sd = _mean_sd(
                ns[g], float(c.loc[m, "drugs_sum"].sum()), float(c.loc[m, "drugs_sq"].sum())
            )
            st[g] = {"mean": mean, "sd": sd}
        label = "number of drugs prescribed in the window"
        add(label, "continuous", st)
        if "with_drugs" in c.columns:
            support[label] = {
                g: (int(c.loc[m, "with_drugs"].sum()), ns[g] - int(c.loc[m, "with_drugs"].sum()))
                for g, m in groups.items()
            }
    out = pd.DataFrame(rows)
    out.attrs["support"] = support
    return out


def _need_detail(cube: ProfileCube) -> None:
    if not cube.detail:
        raise ValueError("this statistic needs a cube built with detail=True")


def condition_label(codelist_name: str) -> str:
    """'risk_condition_heart_failure' -> 'heart failure'."""
    for prefix in ("risk_condition_", "risk_drug_"):
        if codelist_name.startswith(prefix):
            codelist_name = codelist_name[len(prefix) :]
    words = codelist_name.replace("_", " ").replace("copd asthma", "COPD/asthma").split(" ")
    return " ".join(ACRONYMS.get(w, w) for w in words)


ACRONYMS = {"ssri": "SSRI", "ssris": "SSRIs", "snri": "SNRI", "nsaid": "NSAID", "nsaids": "NSAIDs",
            "ppi": "PPI", "ppis": "PPIs", "copd": "COPD", "ckd": "CKD", "gi": "GI"}  # fmt: skip
"""Words of code-list names written as acronyms in labels ('risk_drug_ssri' -> 'SSRI')."""


# ----------------------------------------------------------------------------- prevalence
def site_prevalence(cube: ProfileCube, params: Params | None = None) -> pd.DataFrame:
    """Share of the pain cohort with a qualifying episode at each site (a patient may have
    several sites, so the shares add up to more than 100%)."""
    _need_detail(cube)
    p = params or cube.params
    f = cube.flags(p)
    c = cube.cells[f["pain"]]
    n = int(c["n"].sum())
    rows = []
    for i, site in enumerate(cube.sites):
        x = int(c.loc[(c["site_mask"] & (1 << i)) != 0, "n"].sum())
        rows.append({"site": site, **proportion(x, n, p).as_dict()})
    return pd.DataFrame(rows)


def condition_prevalence(
    cube: ProfileCube, params: Params | None = None, among: str = "pain"
) -> pd.DataFrame:
    """Share of the pain cohort (or ``among='all'``) with each risk-condition group, any
    risk condition, and any risk drug, with intervals."""
    _need_detail(cube)
    p = params or cube.params
    f = cube.flags(p)
    m = f["pain"] if among == "pain" else pd.Series(True, index=f.index)
    c = cube.cells[m]
    n = int(c["n"].sum())
    rows = []
    for name in p.risk_conditions:
        bit = cube.condition_bits([name])
        x = int(c.loc[(c["cond_mask"] & bit) != 0, "n"].sum())
        rows.append(
            {"condition": condition_label(name), "codelist": name, **proportion(x, n, p).as_dict()}
        )
    rows.append(
        {
            "condition": "any risk condition",
            "codelist": "",
            **proportion(int(c.loc[f.loc[c.index, "risk_condition"], "n"].sum()), n, p).as_dict(),
        }
    )
    for name in p.risk_drugs:
        bit = cube.drug_bits([name])
        x = int(c.loc[(c["drug_mask"] & bit) != 0, "n"].sum())
        rows.append(
            {
                "condition": f"drug: {condition_label(name)}",
                "codelist": name,
                **proportion(x, n, p).as_dict(),
            }
        )
    return pd.DataFrame(rows)


def condition_combinations(cube: ProfileCube, params: Params | None = None) -> pd.DataFrame:
    """UpSet-style table: patients of the pain cohort by the exact combination of
    risk-condition groups they have (one column per group, True/False), largest first."""
    _need_detail(cube)
    p = params or cube.params
    f = cube.flags(p)
    c = cube.cells[f["pain"]]
    bits = cube.condition_bits(p.risk_conditions)
    combo = (c["cond_mask"] & bits).rename("mask")
    t = c.assign(mask=combo).groupby("mask")["n"].sum().reset_index()
    n = int(c["n"].sum())
    for name in p.risk_conditions:
        t[condition_label(name)] = (t["mask"] & cube.condition_bits([name])) != 0
    t["n_conditions"] = t["mask"].map(lambda m: bin(int(m)).count("1"))
    t["pct_of_pain"] = 100.0 * t["n"] / n if n else math.nan
    t = t.sort_values(["n", "mask"], ascending=[False, True]).drop(columns="mask")
    return t.reset_index(drop=True)


# ----------------------------------------------------------------------------- regression
def risk_condition_regression(cube: ProfileCube, params: Params | None = None) -> pd.DataFrame:
    """Logistic regression of having a risk condition within the pain cohort on age band
    and sex, fitted on grouped binomial data (one row per age band x sex cell; identical
    estimates to the patient-level fit). Returns odds ratios with Wald intervals at the
    confidence level; reference categories: the youngest age band and female sex. The
    cells are kept in ``attrs['cells']`` (the disclosure step refits on released cells).
    """
    p = params or cube.params
    f = cube.flags(p)
    c = cube.cells[f["pain"]].assign(event=f.loc[f["pain"], "risk_condition"])
    c = c.assign(band=band_of(c["age"], p))
    g = c.groupby(["band", "sex", "event"])["n"].sum().unstack("event", fill_value=0)
    g = g.reindex(columns=[True, False], fill_value=0).reset_index()
    g.columns = ["band", "sex", "events", "non_events"]
    out = fit_grouped_logit(g, p)
    out.attrs["cells"] = g[(g["events"] + g["non_events"]) > 0]
    return out


ML_METHOD = "maximum likelihood, Wald interval"
FIRTH_METHOD = "Firth penalized likelihood, profile-likelihood interval"


def fit_grouped_logit(cells: pd.DataFrame, p: Params) -> pd.DataFrame:
    """Odds ratios of a grouped binomial logistic regression of ``events`` /
    ``non_events`` on age band and sex (``cells``: band, sex, events, non_events).

    Maximum likelihood with Wald intervals when every band x sex cell has events and
    non-events; otherwise (an empty cell, separated data) Firth's penalized likelihood
    with profile-likelihood intervals (:mod:`analysis.firth`, as R's ``logistf``), whose
    estimates stay finite. The ``method`` column says which. A term without data (a band
    with no patients, one sex only) is listed as not estimable, with the reason.
    """
    g = cells[(cells["events"] + cells["non_events"]) > 0].reset_index(drop=True)
    labels = [b[0] for b in age_bands(p)]
    present = [b for b in labels if b in set(g["band"])]
    ref = present[0] if present else labels[0]
    X = pd.DataFrame({"const": 1.0}, index=g.index)
    missing = {}
    for b in labels:
        if b == ref:
            continue
        term = f"age {b} vs {ref}"
        if b in present:
            X[term] = (g["band"] == b).astype(float)
        else:
            missing[term] = "not estimable: no patients in this age band"
    sexes = set(g["sex"])
    if sexes == {"F", "M"}:
        X["male vs female"] = (g["sex"] == "M").astype(float)
    else:
        missing["male vs female"] = "not estimable: patients of one sex only"
    events = g["events"].to_numpy(dtype=float)
    trials = (g["events"] + g["non_events"]).to_numpy(dtype=float)
    if g.empty:  # nobody in the pain cohort: nothing to estimate
        missing = {
            t: "not estimable: no patients in the pain cohort" for t in [*X.columns[1:], *missing]
        }
        X = X[["const"]]
    sparse = bool(((g["events"] == 0) | (g["non_events"] == 0)).any()) or len(X.columns) == 1
    out = None
    if len(X.columns) == 1:  # no term left to estimate
        out = pd.DataFrame(
            {
                "term": ["const"],
                "odds_ratio": [np.nan],
                "ci_low": [np.nan],
                "ci_high": [np.nan],
                "p_value": [np.nan],
                "method": [""],
            }
        )
    elif not sparse:
        out = _ml_fit(X, g, p)
    if out is None:  # sparse, or maximum likelihood did not converge
        try:
            fit = firth_logit(X.to_numpy(), events, trials, p.confidence_level)
        except FirthNotConverged as exc:  # reported in the table, never a silent number
            return pd.DataFrame(
                {
                    "term": [c for c in X.columns if c != "const"],
                    "odds_ratio": np.nan,
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                    "p_value": np.nan,
                    "method": f"not estimated: {exc}",
                }
            )
        with np.errstate(over="ignore"):
            out = pd.DataFrame(
                {
                    "term": X.columns,
                    "odds_ratio": np.exp(fit.params),
                    "ci_low": np.exp(fit.ci_low),
                    "ci_high": np.exp(fit.ci_high),
                    "p_value": fit.p_values,
                    "method": FIRTH_METHOD,
                }
            )
    out = out[out["term"] != "const"]
    if missing:
        out = pd.concat(
            [
                out,
                pd.DataFrame(
                    {
                        "term": list(missing),
                        "odds_ratio": np.nan,
                        "ci_low": np.nan,
                        "ci_high": np.nan,
                        "p_value": np.nan,
                        "method": list(missing.values()),
                    }
                ),
            ],
            ignore_index=True,
        )
        order = [f"age {b} vs {ref}" for b in labels if b != ref] + ["male vs female"]
        out = out.set_index("term").loc[[t for t in order if t in set(out["term"])]].reset_index()
    return out.reset_index(drop=True)


def _ml_fit(X: pd.DataFrame, g: pd.DataFrame, p: Params) -> pd.DataFrame | None:
    """statsmodels' GLM fit, or None when it does not converge cleanly."""
    import warnings

    from statsmodels.genmod import families
    from statsmodels.genmod.generalized_linear_model import GLM
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    y = g[["events", "non_events"]].to_numpy(dtype=float)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = GLM(y, X, family=families.Binomial()).fit()
    bad = [
        w for w in caught if issubclass(w.category, ConvergenceWarning | PerfectSeparationWarning)
    ]
    # a saturated model (as many cells as terms) fits the observed shares exactly, which
    # statsmodels reports as "perfect separation"; that is spurious there
    if bad and res.df_resid > 0:
        return None
    if not np.all(np.isfinite(res.bse)) or (res.bse > 20).any():
        return None
    ci = res.conf_int(alpha=1 - p.confidence_level)
    return pd.DataFrame(
        {
            "term": X.columns,
            "odds_ratio": np.exp(res.params.values),
            "ci_low": np.exp(ci.iloc[:, 0].values),
            "ci_high": np.exp(ci.iloc[:, 1].values),
            "p_value": res.pvalues.values,
            "method": ML_METHOD,
        }
    )


def table_one_formatted(t1: pd.DataFrame) -> pd.DataFrame:
    """Table 1 as a paper prints it: 'n (%)' for counts, 'mean (SD)' for continuous
    variables, one column per group and the SMD."""

    def ok(v):
        return v is not None and v == v

    def cell(row, g):
        if row["kind"] in ("count", "binary"):
            n = row[f"{g}_n"]
            if not ok(n):
                return "withheld"
            if row["kind"] == "count":
                return f"{int(n):,}"
            pct = row[f"{g}_pct"]
            return f"{int(n):,} ({pct:.1f}%)" if ok(pct) else f"{int(n):,}"
        m, sd = row[f"{g}_mean"], row[f"{g}_sd"]
        return f"{m:.1f} ({sd:.1f})" if ok(m) and ok(sd) else "withheld"

    n_pain = t1.iloc[0]["pain_n"]
    n_rest = t1.iloc[0]["rest_n"]
    n_pain = f"{int(n_pain):,}" if ok(n_pain) else "withheld"
    n_rest = f"{int(n_rest):,}" if ok(n_rest) else "withheld"
    return pd.DataFrame(
        {
            "variable": t1["variable"],
            f"pain cohort (n = {n_pain})": [cell(r, "pain") for _, r in t1.iterrows()],
            f"rest of the population (n = {n_rest})": [cell(r, "rest") for _, r in t1.iterrows()],
            "SMD": [
                ("" if r["kind"] == "count" or not ok(r["smd"]) else f"{r['smd']:.2f}")
                for _, r in t1.iterrows()
            ],
        }
    )
