"""Eligibility for a local treatment: expected candidates, with one model for the point and
the interval, computed exactly (no decimal depends on a seed).

The model: the share of all patients who are candidates is Q = P x F, where P is the
target proportion (``target_n / population_n``) and F the share of the target subgroup
that would benefit (the paper's "at least 50%").

* ``benefit_distribution: fixed`` (default; F = ``benefit_fraction``, 0.5 as in the
  paper): point = (x / n) x F; interval = the ``ci_method`` interval of the target
  proportion (Wilson by default) times F, in closed form. With the paper's "at least 50%",
  it is a lower bound of the candidates, and is labelled so.
* ``uniform`` (F uniform on [``benefit_low``, ``benefit_high``]) or ``beta`` (F a Beta(a, b)
  scaled to [low, high]): P follows the confidence distribution of ``ci_method`` (the
  distribution whose quantiles are that method's interval limits at every level: the
  Jeffreys posterior Beta(x + 1/2, n - x + 1/2); the score distribution for Wilson; the
  normal one of Agresti-Coull, its mass beyond 0 and 1 at the ends; for Clopper-Pearson,
  the distribution of its lower limit below its median and of its upper limit above it),
  independent of F. The point is (x / n) E[F], the same whatever the method and level, and
  the interval the central quantiles of Q, from its distribution function
  P(Q <= q) = E_F[G(q / F)] by numerical integration (scipy's ``quad``) and root finding.

Per GP list: ``per_gp_list`` is the *expected* number of candidates per list of
``gp_list_size`` patients, with the interval of that expectation (the uncertainty of the
rate). The count in one actual list also varies from list to list: ``in_one_list_low`` /
``in_one_list_high`` are the prediction interval for the number of candidates in one list,
K | Q ~ Binomial(list size, Q) mixed over the distribution of Q (computed on a grid of
2,000 equal-probability values of Q).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from analysis.display import Summary, interval, number
from analysis.estimates import normal_quantile, proportion_ci
from analysis.params import Params

GRID = 2000  # equal-probability values of Q for the prediction interval and the picture


PAPER_BENEFIT = 0.5
"""The paper's benefit fraction: "at least 50%" of the target subgroup."""


def is_lower_bound(distribution: str, fraction: float) -> bool:
    """Whether the estimate is the paper's lower bound: the fixed fraction 0.5 ("at least
    50%"); any other fixed fraction is an assumption, and a distribution an expectation."""
    return distribution == "fixed" and fraction == PAPER_BENEFIT


@dataclass(frozen=True)
class EligibilityEstimate(Summary):
    """The expected number of candidates, as a count, a share, a rate and per GP list,
    each with its interval; prints as a table (notebook) or aligned text (terminal)."""

    target_n: int
    population_n: int
    benefit_fraction: float  # the fixed fraction, or E[F] under a distribution
    candidates: float  # expected count in the database
    candidates_low: float
    candidates_high: float
    pct_of_population: float
    pct_low: float
    pct_high: float
    per_1000: float
    per_1000_low: float
    per_1000_high: float
    per_gp_list: float  # expected candidates per list
    per_gp_list_low: float
    per_gp_list_high: float
    in_one_list_low: int | None  # prediction interval for the count in one actual list
    in_one_list_high: int | None
    gp_list_size: int
    level: float
    benefit_distribution: str
    ci_method: str
    model: str  # the model in words (what the interval means)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def bound(self) -> str:
        """'at least ' for the paper's fixed 0.5 (its "at least 50%": a lower bound), else ''
        (another fixed fraction is a scenario's assumption, not a bound)."""
        return (
            "at least " if is_lower_bound(self.benefit_distribution, self.benefit_fraction) else ""
        )

    @property
    def summary_title(self):
        return "Expected candidates for a local treatment" + (
            " (a lower bound)" if self.bound else ""
        )

    @property
    def summary_headers(self):
        return ("", "estimate", f"{100 * self.level:g}% interval", "interval of")

    def summary_rows(self):
        m = f"{self.gp_list_size:,}"
        e = "the expectation"
        return [
            (
                "candidates in the database",
                number(self.candidates),
                interval(self.candidates_low, self.candidates_high),
                e,
            ),
            (
                "% of all patients",
                number(self.pct_of_population, 2),
                interval(self.pct_low, self.pct_high, 2),
                e,
            ),
            (
                "per 1000 patients",
                number(self.per_1000),
                interval(self.per_1000_low, self.per_1000_high),
                e,
            ),
            (
                f"expected per GP list of {m}",
                number(self.per_gp_list),
                interval(self.per_gp_list_low, self.per_gp_list_high),
                e,
            ),
            (
                f"in one actual list of {m}",
                number(self.per_gp_list),
                interval(self.in_one_list_low, self.in_one_list_high, 0),
                "a prediction (one list)",
            ),
        ]

    def summary_notes(self):
        return [
            f"From {self.target_n:,} patients in the target subgroup of {self.population_n:,}. "
            f"Model: {self.model}."
        ]


# ----------------------------------------------------------------------------- distributions

ESTIMATE_COLUMNS = tuple(f.name for f in fields(EligibilityEstimate))
"""The columns of an estimate's table, in order: the fields of :class:`EligibilityEstimate`."""
INTERVAL_ESTIMATES = ESTIMATE_COLUMNS[
    ESTIMATE_COLUMNS.index("candidates") : ESTIMATE_COLUMNS.index("gp_list_size")
]
"""What derives from the target count: each estimate and its interval."""


def confidence_cdf(p, x: int, n: int, method: str, level: float):
    """The confidence distribution function of a proportion at ``p`` (array), whose
    quantiles are the interval limits of ``method`` (see the module docstring)."""
    from scipy.special import betainc, ndtr

    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    if method == "jeffreys":
        return betainc(x + 0.5, n - x + 0.5, p)
    if method == "wilson":
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (p - x / n) * math.sqrt(n) / np.sqrt(p * (1 - p))
        z = np.where(
            p <= 0, -np.inf if x > 0 else 0.0, np.where(p >= 1, np.inf if x < n else 0.0, z)
        )
        out = ndtr(z)
        return np.where(p >= 1, 1.0, out)
    if method == "agresti_coull":
        zq = normal_quantile(0.5 + level / 2)
        nt = n + zq * zq
        pt = (x + zq * zq / 2) / nt
        # the normal's mass beyond [0, 1] sits at the ends (the interval is clipped so)
        return np.where(p >= 1, 1.0, ndtr((p - pt) / math.sqrt(pt * (1 - pt) / nt)))
    # clopper_pearson: below its median the distribution of the lower limit, above it that
    # of the upper limit (flat between the two medians), so that every quantile is a
    # Clopper-Pearson limit: the u quantile is the lower limit at level 1 - 2u (u < 1/2)
    # and the upper limit at level 2u - 1 (u > 1/2)
    lo = betainc(x, n - x + 1, p) if x > 0 else np.ones_like(p)
    hi = betainc(x + 1, n - x, p) if x < n else np.where(p >= 1, 1.0, 0.0)
    return np.where(lo < 0.5, lo, np.maximum(hi, 0.5))


def benefit_support(params: Params) -> tuple[float, float]:
    if params.benefit_distribution == "fixed":
        return params.benefit_fraction, params.benefit_fraction
    return params.benefit_low, params.benefit_high


def benefit_mean(params: Params) -> float:
    """E[F]: the fixed fraction, the middle of the uniform range, or the scaled Beta's mean."""
    lo, hi = benefit_support(params)
    if params.benefit_distribution == "uniform":
        return (lo + hi) / 2
    if params.benefit_distribution == "beta":
        a, b = params.benefit_beta_a, params.benefit_beta_b
        return lo + (hi - lo) * a / (a + b)
    return params.benefit_fraction


def share_cdf(q: float, x: int, n: int, params: Params) -> float:
    """P(Q <= q) for Q = P x F (module docstring), by numerical integration over F."""
    from scipy import integrate
    from scipy.stats import beta as beta_dist

    m, lvl = params.ci_method, params.confidence_level
    lo, hi = benefit_support(params)

    def g(f):
        return float(confidence_cdf(q / f, x, n, m, lvl)) if f > 0 else 1.0

    if lo == hi:
        return g(lo)
    if params.benefit_distribution == "uniform":
        val, _ = integrate.quad(g, lo, hi, limit=200, epsabs=1e-12, epsrel=1e-10)
        return val / (hi - lo)
    a, b = params.benefit_beta_a, params.benefit_beta_b
    dens = beta_dist(a, b)
    val, _ = integrate.quad(
        lambda u: g(lo + (hi - lo) * u) * dens.pdf(u), 0, 1, limit=200, epsabs=1e-12, epsrel=1e-10
    )
    return val


def share_quantile(prob: float, x: int, n: int, params: Params) -> float:
    """The ``prob`` quantile of Q (0-1), by root finding on :func:`share_cdf`."""
    from scipy.optimize import brentq

    top = benefit_support(params)[1]
    if share_cdf(0.0, x, n, params) >= prob:
        return 0.0
    if top <= 0:
        return 0.0
    return brentq(lambda q: share_cdf(q, x, n, params) - prob, 0.0, top, xtol=1e-14, rtol=1e-12)


# ----------------------------------------------------------------------------- the estimate
def model_text(params: Params) -> str:
    m = {
        "wilson": "Wilson",
        "clopper_pearson": "Clopper-Pearson",
        "agresti_coull": "Agresti-Coull",
        "jeffreys": "Jeffreys",
    }[params.ci_method]
    if params.benefit_distribution == "fixed":
        paper = (
            " (the paper's 'at least', a lower bound)"
            if is_lower_bound("fixed", params.benefit_fraction)
            else " (an assumed share)"
        )
        return (
            f"target proportion x a fixed benefit fraction {params.benefit_fraction:g}{paper}; "
            f"interval: the {m} interval of the target proportion x {params.benefit_fraction:g}"
        )
    lo, hi = benefit_support(params)
    dist = (
        f"uniform on {lo:g}-{hi:g}"
        if params.benefit_distribution == "uniform"
        else f"Beta({params.benefit_beta_a:g}, {params.benefit_beta_b:g}) scaled to {lo:g}-{hi:g}"
    )
    return (
        f"target proportion ({m} confidence distribution) x benefit fraction ({dist}); point: the "
        "observed proportion x the mean benefit fraction; interval: exact quantiles of the product"
    )


def eligibility_estimate(
    target_n: int, population_n: int, params: Params | None = None, *, prediction: bool = True
) -> EligibilityEstimate:
    """Expected candidates for a local treatment with its interval (module docstring);
    ``prediction=False`` leaves out the prediction interval for one list (None)."""

    p = params or Params()
    x, n = int(target_n), int(population_n)
    a = (1 - p.confidence_level) / 2
    if n == 0:
        point = lo = hi = math.nan
    elif p.benefit_distribution == "fixed":
        f = p.benefit_fraction
        ci = proportion_ci(x, n, p.confidence_level, p.ci_method)
        point, lo, hi = x / n * f, ci[0] * f, ci[1] * f
    else:
        # the point is one quantity whatever the interval method and level: the observed
        # target proportion x / n times the mean benefit E[F]; only the interval uses the
        # method's confidence distribution
        point = x / n * benefit_mean(p)
        lo, hi = share_quantile(a, x, n, p), share_quantile(1 - a, x, n, p)
    k_lo, k_hi = one_list_prediction(x, n, p) if n and prediction else (None, None)
    L = p.gp_list_size
    return EligibilityEstimate(
        target_n=x,
        population_n=n,
        benefit_fraction=benefit_mean(p),
        candidates=point * n,
        candidates_low=lo * n,
        candidates_high=hi * n,
        pct_of_population=100 * point,
        pct_low=100 * lo,
        pct_high=100 * hi,
        per_1000=1000 * point,
        per_1000_low=1000 * lo,
        per_1000_high=1000 * hi,
        per_gp_list=L * point,
        per_gp_list_low=L * lo,
        per_gp_list_high=L * hi,
        in_one_list_low=k_lo,
        in_one_list_high=k_hi,
        gp_list_size=L,
        level=p.confidence_level,
        benefit_distribution=p.benefit_distribution,
        ci_method=p.ci_method,
        model=model_text(p),
    )


def _proportion_quantiles(probs, x, n, params):
    """Quantiles of the confidence distribution of P (vectorised bisection)."""
    lo, hi = np.zeros(len(probs)), np.ones(len(probs))
    for _ in range(60):
        mid = (lo + hi) / 2
        below = confidence_cdf(mid, x, n, params.ci_method, params.confidence_level) < probs
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return (lo + hi) / 2


def share_grid(x: int, n: int, params: Params) -> np.ndarray:
    """``GRID`` equal-probability values of Q (the midpoints of its quantile function)."""
    probs = (np.arange(GRID) + 0.5) / GRID
    pq = _proportion_quantiles(probs, x, n, params)
    if params.benefit_distribution == "fixed":
        return pq * params.benefit_fraction
    # Q = P x F: quantiles of P and F paired on a Latin grid would not give Q's; use the
    # product of independent quantile grids, then take Q's quantiles from it
    lo, hi = benefit_support(params)
    fp = (np.arange(200) + 0.5) / 200
    if params.benefit_distribution == "uniform":
        fq = lo + (hi - lo) * fp
    else:
        from scipy.stats import beta as beta_dist

        fq = lo + (hi - lo) * beta_dist.ppf(fp, params.benefit_beta_a, params.benefit_beta_b)
    # every quantile of P (a subsample such as pq[::10] drops P's top 0.5%: too narrow)
    prod = np.sort((pq[:, None] * fq[None, :]).ravel())
    idx = np.minimum((probs * len(prod)).astype(int), len(prod) - 1)
    return prod[idx]


def one_list_prediction(x: int, n: int, params: Params) -> tuple[int, int]:
    """Prediction interval for the number of candidates in one list of ``gp_list_size``
    patients: quantiles of the Binomial(list size, Q) mixture over Q."""
    from scipy.special import bdtr

    q = share_grid(x, n, params)
    m = params.gp_list_size
    a = (1 - params.confidence_level) / 2
    # the counts that matter: from well below the smallest mean to well above the largest
    sd = math.sqrt(m * 0.25)
    k_lo = max(0, int(m * q.min() - 10 * sd))
    k_hi = min(m, int(m * q.max() + 10 * sd) + 1)
    ks = np.arange(k_lo, k_hi + 1)
    cdf = bdtr(ks[None, :], m, q[:, None]).mean(axis=0)  # P(K <= k), mixed over Q
    low = int(ks[np.searchsorted(cdf, a - 1e-12)])
    high = int(ks[min(np.searchsorted(cdf, 1 - a - 1e-12), len(ks) - 1)])
    return low, high


def eligibility_distribution(
    est: EligibilityEstimate, params: Params | None = None, bins: int = 60
):
    """The distribution of the expected candidates per GP list under the model, as the
    probability of each of ``bins`` equal-width bins (exact: from the distribution of Q)."""
    import pandas as pd

    p = params or Params()
    q = share_grid(est.target_n, est.population_n, p) * p.gp_list_size
    lo, hi = float(q.min()), float(q.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    counts, _ = np.histogram(q, bins=edges)
    prob = counts / counts.sum()
    return pd.DataFrame(
        {"per_gp_list_from": edges[:-1], "per_gp_list_to": edges[1:], "probability": prob}
    )
