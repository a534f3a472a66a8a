"""Many practices: every practice's estimate from one pass, a pooled estimate with honest
heterogeneity, and the limits of a funnel plot.

* **Per practice** the profile cube is built with a practice stratum beside its cells
  (:func:`analysis.cohort.profile_cube` with ``by_practice=True``: the same query, one scan,
  any engine); each practice's population, pain cohort and target subgroup are counted from
  it, and its
  target proportion gets the ``ci_method`` interval and its candidates per GP list the
  eligibility interval (:mod:`analysis.eligibility`).
* **Pooling** is a meta-analysis of the practices' target proportions on the logit scale:
  y = log(x / (n - x)), var = 1/x + 1/(n - x); random effects by DerSimonian-Laird
  (``pool_method: dl``, statsmodels' ``combine_effects``) or REML (``reml``: Viechtbauer
  2005's fixed-point iteration), or a fixed (common) effect (``fixed``). A practice with 0
  or n events gets 0.5 added to both cells (a continuity correction, named in ``method``).
  tau^2 is the between-practice variance of the logit, I^2 = max(0, (Q - (k - 1)) / Q) from
  the fixed-effect Q, and the 95% prediction interval for a new practice is
  mu +- t(k - 2) sqrt(tau^2 + se^2) (Higgins, Thompson and Spiegelhalter 2009), all
  back-transformed to percent.
* **Funnel limits** around the network's proportion p0 (events over patients of the released
  practices): binomial limits with the interpolation of Spiegelhalter (Stat Med 2005;24:
  1185-202, appendix A.1.1) at 95% and 99.8%.
* **Disclosure**: a practice with a withheld count is left out of the table, the plots and
  the pool, and the number left out is said; the pool uses released (rounded) counts only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.eligibility import eligibility_estimate
from analysis.estimates import proportion
from analysis.rules import nested_withheld

POOL_METHODS = ("dl", "reml", "fixed")
METHOD_NAMES = {
    "dl": "random effects, DerSimonian-Laird",
    "reml": "random effects, REML",
    "fixed": "fixed (common) effect, inverse variance",
}


# ----------------------------------------------------------------------------- per practice
def practice_table(study) -> tuple[pd.DataFrame, int]:
    """One row per practice with released counts (population, pain cohort, target
    subgroup), the target proportion (%) with its interval, and the expected candidates per
    GP list with theirs; and the number of practices left out by disclosure control."""
    p, cube, rule = study.params, study.cube, study.disclosure_rule
    stratum = cube.practices
    if stratum is None:
        raise ValueError("the study's cube has no practice stratum (run_study(by_practice=True))")
    f = stratum.flag_arrays(p)
    code, n = stratum.columns["practice_code"], stratum.columns["n"]
    ids = stratum.practice_ids

    def by(mask):
        return np.bincount(code, weights=n * mask, minlength=len(ids)).astype(np.int64)

    pop, pain, target = by(np.ones(len(n), bool)), by(f["pain"]), by(f["target"])
    present = np.bincount(code, minlength=len(ids)) > 0  # a patient in the population
    counts = {ids[c]: (int(pop[c]), int(pain[c]), int(target[c])) for c in np.flatnonzero(present)}
    out = left_out_by_rule(counts, rule)
    rows = [
        practice_row(pid, *(rule.release(x) if rule else x for x in counts[pid]), p)
        for pid in sorted(counts)
        if pid not in out
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS)), len(out)


def left_out_by_rule(counts: dict, rule) -> set:
    """The practices left out under ``rule``, from ``counts`` (practice id -> population,
    pain cohort, target subgroup): every practice with a withheld count (below the
    threshold, or within it of the count that contains it: its pain cohort of its
    population, its target subgroup of its pain cohort), and more while the left-out
    practices could be recovered from the network's totals, which are published too:
    while the left-out practices together (the released totals minus the table) hold a
    count that would be withheld, the released practice with the smallest released target
    subgroup (then population, then id) is left out as well (complementary suppression)."""
    if rule is None:
        return set()

    names = ("population", "pain", "target")
    nested = {"pain": ("population",), "target": ("pain",)}

    def withheld(v, known=names):
        """Counts among ``known`` withheld: below the threshold, or within it of the one
        that contains it."""
        groups = {g: x for g, x in zip(names, v, strict=True) if g in known}
        parents = {g: tuple(a for a in nested[g] if a in groups) for g in nested if g in groups}
        return nested_withheld(groups, parents, rule)

    out = {k for k, v in counts.items() if withheld(v)}
    totals = [sum(v[i] for v in counts.values()) for i in range(3)]
    known = tuple(g for g, x in zip(names, totals, strict=True) if not rule.suppressed(x))

    def recoverable() -> bool:
        """Whether the left-out practices together, as the network's released totals minus
        the table give them, hold a count the rule would withhold."""
        return bool(withheld([sum(counts[k][i] for k in out) for i in range(3)], known))

    def released(k):  # the choice is a function of released counts
        return rule.release(counts[k][2]), rule.release(counts[k][0]), k

    while out and len(out) < len(counts) and recoverable():
        out.add(min(set(counts) - out, key=released))
    return out


# what derives from a practice's counts (percent; candidates per GP list)
ESTIMATES = (
    "target_pct",
    "ci_low",
    "ci_high",
    "per_gp_list",
    "per_gp_list_low",
    "per_gp_list_high",
)
COLUMNS = ("practice_id", "population_n", "pain_n", "target_n", *ESTIMATES)


def practice_row(practice_id: str, population_n: int, pain_n: int, target_n: int, p) -> dict:
    """One row of the practices table from released counts: the target share (%) with the
    ``ci_method`` interval and the expected candidates per GP list with the interval of the
    expectation (no one-list prediction: an exact mixture per practice is too slow)."""

    pr = proportion(target_n, population_n, p)
    e = eligibility_estimate(target_n, population_n, p, prediction=False)
    return {
        "practice_id": practice_id,
        "population_n": population_n,
        "pain_n": pain_n,
        "target_n": target_n,
        "target_pct": pr.pct,
        "ci_low": pr.ci_low,
        "ci_high": pr.ci_high,
        "per_gp_list": e.per_gp_list,
        "per_gp_list_low": e.per_gp_list_low,
        "per_gp_list_high": e.per_gp_list_high,
    }


# ----------------------------------------------------------------------------- pooling
@dataclass(frozen=True)
class Pooled:
    method: str
    estimate: float  # percent
    ci_low: float
    ci_high: float
    tau2: float | None  # between-practice variance of the logit (None: one practice)
    i2: float  # percent
    prediction_low: float | None  # percent; None with fewer than 3 practices
    prediction_high: float | None
    practices: int
    corrected: int  # practices given the continuity correction
    practices_left_out: int = 0  # practices withheld by disclosure control

    def as_dict(self) -> dict:
        """The keys of ``practices --json``'s ``pooled`` (POOLED_COLUMNS)."""
        return {k: getattr(self, k) for k in POOLED_COLUMNS}


POOLED_COLUMNS = (
    "method",
    "estimate",
    "ci_low",
    "ci_high",
    "tau2",
    "i2",
    "prediction_low",
    "prediction_high",
    "practices",
    "practices_left_out",
)


def _expit(z: float) -> float:
    return 100.0 / (1.0 + math.exp(-z))


def logit_effects(x, n) -> tuple[np.ndarray, np.ndarray, int]:
    """Logits and their variances; 0.5 added to both cells of a practice with 0 or n."""
    x, n = np.asarray(x, float), np.asarray(n, float)
    zero = (x == 0) | (x == n)
    a = np.where(zero, x + 0.5, x)
    b = np.where(zero, n - x + 0.5, n - x)
    return np.log(a / b), 1.0 / a + 1.0 / b, int(zero.sum())


def reml_tau2(y: np.ndarray, v: np.ndarray, tol: float = 1e-10, max_iter: int = 1000) -> float:
    """REML estimate of tau^2 by the fixed-point iteration of Viechtbauer (J Educ Behav Stat
    2005;30:261-93, eq. 10), started at the DerSimonian-Laird value, truncated at 0."""
    w = 1 / v
    mu = np.sum(w * y) / np.sum(w)
    q = np.sum(w * (y - mu) ** 2)
    tau2 = max(0.0, (q - (len(y) - 1)) / (np.sum(w) - np.sum(w**2) / np.sum(w)))
    for _ in range(max_iter):
        w = 1 / (v + tau2)
        mu = np.sum(w * y) / np.sum(w)
        new = max(0.0, np.sum(w**2 * ((y - mu) ** 2 - v)) / np.sum(w**2) + 1 / np.sum(w))
        if abs(new - tau2) < tol:
            return new
        tau2 = new
    return tau2


def random_effects(y, v, method: str = "dl") -> tuple[float, float, float | None, float | None]:
    """Inverse-variance pool of effects ``y`` with variances ``v``: (mean, its standard
    error, tau², I² in percent); tau² by ``method`` (``dl``, ``reml``; 0 for ``fixed``),
    I² = (Q - (k - 1)) / Q truncated at 0 (Higgins & Thompson 2002). With one effect,
    tau² and I² are not estimable (None)."""
    y, v = np.asarray(y, float), np.asarray(v, float)
    k = len(y)
    w_fe = 1 / v
    mu_fe = float(np.sum(w_fe * y) / np.sum(w_fe))
    q = float(np.sum(w_fe * (y - mu_fe) ** 2))
    # one practice has no between-practice variation to measure: I2 and tau2 are not
    # estimable (None), not 100% and 0 (Q is a rounding error there)
    i2 = (100.0 * max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0) if k >= 2 else None
    if k == 1:
        tau2 = None
    elif method == "fixed":
        tau2 = 0.0
    elif method == "dl":
        import warnings

        from statsmodels.stats.meta_analysis import combine_effects

        # the moment estimate, truncated at 0 (statsmodels leaves it negative when Q < k - 1,
        # and then warns of the square root of its own negative variance, unused here)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            tau2 = max(0.0, float(combine_effects(y, v, method_re="dl").tau2))
    else:
        tau2 = reml_tau2(y, v)
    w = 1 / (v + (tau2 or 0.0))
    mu = float(np.sum(w * y) / np.sum(w))
    se = math.sqrt(1 / np.sum(w))
    return mu, se, tau2, i2


def pool(x, n, method: str = "dl", level: float = 0.95, left_out: int = 0) -> Pooled:
    """Pool the practices' target proportions ``x / n`` (see the module's docstring)."""
    from scipy.stats import norm, t

    if method not in POOL_METHODS:
        raise ValueError(f"pool_method must be one of {', '.join(POOL_METHODS)}, got {method!r}")
    k = len(x)
    if k == 0:
        raise ValueError("no practice to pool")
    y, v, corrected = logit_effects(x, n)
    mu, se, tau2, i2 = random_effects(y, v, method)
    z = norm.ppf(0.5 + level / 2)
    if k >= 3 and method != "fixed":
        half = t.ppf(0.5 + level / 2, k - 2) * math.sqrt(tau2 + se**2)
        pred = (_expit(mu - half), _expit(mu + half))
    else:
        pred = (None, None)
    name = f"{METHOD_NAMES[method]}, logit scale"
    if corrected:
        name += f"; 0.5 added to both cells of {corrected} practice(s) with 0 or all events"
    return Pooled(
        method=name,
        estimate=_expit(mu),
        ci_low=_expit(mu - z * se),
        ci_high=_expit(mu + z * se),
        tau2=tau2,
        i2=i2,
        prediction_low=pred[0],
        prediction_high=pred[1],
        practices=k,
        corrected=corrected,
        practices_left_out=left_out,
    )


MIN_TO_COMPARE = 2
"""Practices needed for anything between practices (a pool, heterogeneity, a funnel, a
forest plot, a spread across practices)."""


def comparable(practices) -> bool:
    """Whether there are practices to compare: ``MIN_TO_COMPARE`` or more (released)."""
    try:
        return int(float(practices)) >= MIN_TO_COMPARE
    except (TypeError, ValueError):
        return False


def no_comparison_words(released: int, left_out: int = 0) -> str:
    """Why there is nothing between practices to show, in one sentence."""
    held = (
        "The data hold one practice"
        if released == 1 and not left_out
        else f"{released} practice(s) released ({left_out} left out by disclosure control)"
    )
    return (
        f"{held}: there is nothing to compare or pool, so no pooled estimate, funnel plot, "
        "forest plot or spread across practices is shown."
    )


def heterogeneity(tau2, i2, practices) -> str:
    """Between-practice heterogeneity in words, the one wording of every output: "tau² 0.061,
    I² 94%", or that it is not estimable with fewer than two practices; a withheld value
    reads "withheld" (values may come back from a CSV as text)."""

    def num(v, digits):
        try:
            x = float(v)
        except (TypeError, ValueError):
            return None
        return None if math.isnan(x) else f"{x:.{digits}f}"

    try:
        k = int(float(practices))
    except (TypeError, ValueError):
        k = 0
    if k < 2:
        return "tau\u00b2 and I\u00b2 not estimable (fewer than two practices)"
    t, i = num(tau2, 3), num(i2, 0)
    return f"tau\u00b2 {t or 'withheld'}, I\u00b2 {i + '%' if i else 'withheld'}"


# ----------------------------------------------------------------------------- funnel
def binomial_limit(p0: float, n: int, prob: float) -> float:
    """The ``prob`` quantile of a proportion out of ``n`` under Binomial(n, p0), as a share,
    with the interpolation of Spiegelhalter (2005, appendix A.1.1) so that the limit is a
    smooth function of n."""
    from scipy.stats import binom

    r = binom.ppf(prob, n, p0)
    f_r, f_r1 = binom.cdf(r, n, p0), binom.cdf(r - 1, n, p0)
    alpha = (f_r - prob) / (f_r - f_r1) if f_r > f_r1 else 0.0
    # r - alpha can fall below 0 (r = 0) or above n: a limit of a proportion lies in [0, 1]
    return float(min(1.0, max(0.0, (r - alpha) / n)))


def funnel_limits(p0: float, sizes, levels=(0.95, 0.998)) -> pd.DataFrame:
    """Lower and upper control limits (percent) at each practice size for each level."""
    rows = []
    for n in sizes:
        row = {"n": int(n)}
        for lev in levels:
            tag = f"{100 * lev:g}".replace(".", "_")
            row[f"low_{tag}"] = 100 * binomial_limit(p0, int(n), (1 - lev) / 2)
            row[f"high_{tag}"] = 100 * binomial_limit(p0, int(n), 1 - (1 - lev) / 2)
        rows.append(row)
    return pd.DataFrame(rows)


def outside_limits(table: pd.DataFrame, p0: float, level: float = 0.998) -> pd.Series:
    """Practices whose target proportion lies outside the ``level`` limits at their size."""
    lo = table["population_n"].map(lambda n: 100 * binomial_limit(p0, int(n), (1 - level) / 2))
    hi = table["population_n"].map(lambda n: 100 * binomial_limit(p0, int(n), 1 - (1 - level) / 2))
    return (table["target_pct"] < lo) | (table["target_pct"] > hi)


# ----------------------------------------------------------------------------- the summary
def practices_summary(study) -> dict:
    """The ``practices --json`` object: every released practice and the pooled estimate."""
    table, left_out = practice_table(study)
    pooled = pooled_table(table, left_out, study.params)
    return {
        "practices": table.to_dict(orient="records"),
        "pooled": pooled.iloc[0].to_dict() if len(pooled) else None,
        "practices_left_out": left_out,
    }


def pooled_table(table: pd.DataFrame, left_out: int, params) -> pd.DataFrame:
    """The pool of a (released) practices table under the parameters' ``pool_method`` and
    ``confidence_level``, as a one-row table (no row when no practice is released)."""
    if not len(table):
        return pd.DataFrame(columns=list(POOLED_COLUMNS))
    pooled = pool(
        table["target_n"].to_numpy(),
        table["population_n"].to_numpy(),
        params.pool_method,
        params.confidence_level,
        left_out,
    )
    return pd.DataFrame([pooled.as_dict()], columns=list(POOLED_COLUMNS))
