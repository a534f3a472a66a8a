"""Estimates from counts: proportions with their intervals, and age summaries from a
frequency table. Numpy and scipy.special only (no pandas), so that the figures summary
stays cheap to start.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from analysis.display import Summary, interval, number
from analysis.params import Params

# statsmodels' names for the interval methods of Params.ci_method
_SM_METHOD = {
    "wilson": "wilson",
    "clopper_pearson": "beta",
    "agresti_coull": "agresti_coull",
    "jeffreys": "jeffreys",
}
METHOD_LABEL = {
    "wilson": "Wilson score interval (Newcombe 1998, method 3)",
    "clopper_pearson": "Clopper-Pearson exact interval (Newcombe 1998, method 5)",
    "agresti_coull": "Agresti-Coull interval (Agresti and Coull 1998)",
    "jeffreys": "Jeffreys interval (Brown, Cai and DasGupta 2001)",
}


@dataclass(frozen=True)
class Proportion(Summary):
    """A share ``numerator / denominator`` with its two-sided interval, all in percent.
    Prints as one line (``str``) and as a table in a notebook."""

    numerator: int
    denominator: int
    pct: float
    ci_low: float
    ci_high: float
    method: str
    level: float

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        ci = f"{self.ci_low:.2f}-{self.ci_high:.2f}"
        return f"{self.numerator}/{self.denominator} = {self.pct:.2f}% ({ci})"

    @property
    def summary_headers(self):
        return ("n", "N", "%", f"{100 * self.level:g}% CI")

    def summary_rows(self):
        return [
            (
                number(self.numerator),
                number(self.denominator),
                number(self.pct, 1),
                interval(self.ci_low, self.ci_high, 1),
            )
        ]

    def summary_notes(self):
        return [f"Interval: {METHOD_LABEL.get(self.method, self.method)}."]


def normal_quantile(p: float) -> float:
    """Standard normal quantile (the standard library's, exact to double precision)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def t_quantile(p: float, df: int) -> float:
    """Student t quantile with ``df`` degrees of freedom.

    For df >= 200 the Cornish-Fisher expansion of Abramowitz and Stegun (1964), 26.7.5,
    to the fourth order, whose error there is below 1e-9 (a test checks it against scipy);
    below 200, ``scipy.special.stdtrit``. This keeps scipy out of the figures summary
    for realistic group sizes.
    """
    if df < 200:
        from scipy.special import stdtrit

        return float(stdtrit(df, p))
    z = normal_quantile(p)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def proportion_ci(
    x: int, n: int, level: float = 0.95, method: str = "wilson"
) -> tuple[float, float]:
    """Two-sided interval for a binomial proportion ``x/n`` (as fractions 0-1).

    Methods: ``wilson`` (score; Wilson 1927, Newcombe 1998 method 3), ``clopper_pearson``
    (exact; Newcombe method 5), ``agresti_coull`` (Agresti and Coull 1998), ``jeffreys``
    (equal-tailed Beta(x + 1/2, n - x + 1/2) interval with the end points 0 at x = 0 and
    1 at x = n, as Brown, Cai and DasGupta 2001, section 4.1.2, recommend). ``n = 0`` gives
    NaN; a numerator above the denominator, or a count that is not a whole number, is
    refused.

    The closed forms are those of ``statsmodels.stats.proportion.proportion_confint``
    (tests check they agree) with one deliberate difference: at x = 0 (x = n) statsmodels'
    Jeffreys interval keeps the Beta quantile as its lower (upper) end, slightly above 0
    (below 1), while here it is exactly 0 (1). They are written out here (beta quantiles from
    ``scipy.special``) so that a command does not pay statsmodels' import time for four
    formulas (see the README's Performance section).
    """
    if method not in _SM_METHOD:
        raise ValueError(
            f"unknown interval method {method!r}; expected one of {', '.join(_SM_METHOD)}"
        )
    for name, v in (("numerator", x), ("denominator", n)):
        if isinstance(v, bool) or not float(v).is_integer() or v < 0:
            raise ValueError(f"{name} {v!r} must be a whole number of patients (0 or more)")
    if x > n:
        raise ValueError(f"numerator {x} is larger than the denominator {n}")
    x, n = int(x), int(n)
    if n == 0:
        return (math.nan, math.nan)
    alpha = 1 - level
    z = normal_quantile(1 - alpha / 2)
    p = x / n
    if method == "wilson":
        den = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / den
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
        lo, hi = centre - half, centre + half
    elif method == "agresti_coull":
        nt = n + z * z
        pt = (x + z * z / 2) / nt
        half = z * math.sqrt(pt * (1 - pt) / nt)
        lo, hi = pt - half, pt + half
    elif method == "clopper_pearson":
        from scipy.special import betaincinv

        lo = float(betaincinv(x, n - x + 1, alpha / 2)) if x > 0 else 0.0
        hi = float(betaincinv(x + 1, n - x, 1 - alpha / 2)) if x < n else 1.0
    else:  # jeffreys
        from scipy.special import betaincinv

        lo = float(betaincinv(x + 0.5, n - x + 0.5, alpha / 2))
        hi = float(betaincinv(x + 0.5, n - x + 0.5, 1 - alpha / 2))
    # at x = 0 (x = n) every method's lower (upper) end is exactly 0 (1); the Jeffreys
    # interval takes these end points by convention, the others reach them analytically
    lo = 0.0 if x == 0 else lo
    hi = 1.0 if x == n else hi
    return (max(0.0, lo), min(1.0, hi))


def proportion(x: int, n: int, params: Params | None = None) -> Proportion:
    p = params or Params()
    lo, hi = proportion_ci(int(x), int(n), p.confidence_level, p.ci_method)
    pct = 100.0 * x / n if n else math.nan
    return Proportion(int(x), int(n), pct, 100 * lo, 100 * hi, p.ci_method, p.confidence_level)


# ----------------------------------------------------------------------------- ages
@dataclass(frozen=True)
class AgeSummary:
    """Age in completed years: n, mean, sample SD (n - 1), range, median and quartiles
    (linear interpolation, Hyndman and Fan type 7, as numpy and R's default) and the t
    interval of the mean."""

    n: int
    mean: float
    sd: float
    min: float
    max: float
    median: float
    q1: float
    q3: float
    mean_ci_low: float
    mean_ci_high: float

    def as_dict(self) -> dict:
        return asdict(self)


def _quantile_from_counts(values: np.ndarray, counts: np.ndarray, q: float) -> float:
    """Type-7 quantile of the sorted sample in which ``values[i]`` occurs ``counts[i]`` times."""
    n = counts.sum()
    h = (n - 1) * q
    lo = int(math.floor(h))
    cum = np.cumsum(counts)
    x_lo = values[np.searchsorted(cum, lo + 1)]
    x_hi = values[np.searchsorted(cum, min(lo + 2, n))]
    return float(x_lo + (h - lo) * (x_hi - x_lo))


def age_summary_from_counts(ages, counts, level: float = 0.95) -> AgeSummary:
    """Summary of integer ages given as a frequency table (``ages[i]`` x ``counts[i]``)."""
    ages = np.asarray(ages, dtype=float)
    counts = np.asarray(counts, dtype=np.int64)
    keep = counts > 0
    ages, counts = ages[keep], counts[keep]
    order = np.argsort(ages)
    ages, counts = ages[order], counts[order]
    n = int(counts.sum())
    if n == 0:
        nan = math.nan
        return AgeSummary(0, nan, nan, nan, nan, nan, nan, nan, nan, nan)
    mean = float((ages * counts).sum() / n)
    ss = float((counts * (ages - mean) ** 2).sum())
    sd = math.sqrt(ss / (n - 1)) if n > 1 else math.nan
    if n > 1:
        half = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    else:
        half = math.nan
    return AgeSummary(
        n=n,
        mean=mean,
        sd=sd,
        min=float(ages[0]),
        max=float(ages[-1]),
        median=_quantile_from_counts(ages, counts, 0.5),
        q1=_quantile_from_counts(ages, counts, 0.25),
        q3=_quantile_from_counts(ages, counts, 0.75),
        mean_ci_low=mean - half,
        mean_ci_high=mean + half,
    )


def age_summary_masked(
    ages: np.ndarray, counts: np.ndarray, mask=None, level: float = 0.95
) -> AgeSummary:
    """Age summary of the cells in ``mask`` (ages: one integer age per cell, counts: patients)."""
    ages = np.asarray(ages, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        ages, counts = ages[m], counts[m]
    if len(ages) == 0:
        return age_summary_from_counts([], [], level)
    lo = int(ages.min())
    by_age = np.bincount(ages - lo, weights=counts).astype(np.int64)
    values = np.arange(lo, lo + len(by_age))
    return age_summary_from_counts(values, by_age, level)
