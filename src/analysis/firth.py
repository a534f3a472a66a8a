"""Firth's penalized-likelihood logistic regression for grouped binomial data, with
profile penalized-likelihood intervals (Firth 1993; Heinze and Schemper 2002; the method
of R's ``logistf``).

The penalized log-likelihood is l*(b) = l(b) + 1/2 log det I(b), with I(b) = X' W X and
W = diag(n_i p_i (1 - p_i)) for n_i trials per row. Its maximum is finite even when a cell
is empty or the data are separated, where maximum likelihood diverges. For one binary
covariate it equals the log odds ratio of the 2x2 table with 1/2 added to each cell.

An interval for b_j holds the values c with 2 (l*(b_hat) - max l*(b | b_j = c)) at most
the chi-square(1) quantile at the confidence level; the p-value is the penalized
likelihood-ratio test of b_j = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FirthFit:
    params: np.ndarray  # coefficients (log odds ratios), one per column of X
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_values: np.ndarray
    loglik: float  # the maximised penalized log-likelihood


def penalized_loglik(b, X, events, trials) -> float:
    eta = X @ b
    # log p and log (1 - p), stable for large |eta|
    log_p = -np.logaddexp(0.0, -eta)
    log_q = -np.logaddexp(0.0, eta)
    p = np.exp(log_p)
    w = trials * p * (1 - p)
    sign, logdet = np.linalg.slogdet(X.T @ (X * w[:, None]))
    if sign <= 0:
        return -math.inf
    return float(events @ log_p + (trials - events) @ log_q + 0.5 * logdet)


class FirthNotConverged(ArithmeticError):
    """The penalized likelihood's maximum was not found within the iterations allowed."""


MAX_STEP = 5.0
"""Largest change of any coefficient in one Newton step; a longer step is shortened as a
whole (its direction kept), as logistf's ``maxstep``."""


def _fit(X, events, trials, fixed: dict | None = None, start=None, max_iter=1000):
    """Maximise l* by Newton steps on Firth's modified score with a line search that
    accepts only a step that does not lower l* (halving it up to 30 times); the
    coefficients in ``fixed`` (index -> value) are held at their value. Converged when the
    modified score's largest free component is below 1e-8 or the last step below 1e-10
    (held coefficients can make the climb slow: up to ``max_iter`` steps); otherwise
    :class:`FirthNotConverged` is raised (never a silent number)."""
    k = X.shape[1]
    fixed = fixed or {}
    free = np.array([j for j in range(k) if j not in fixed], dtype=int)
    b = np.zeros(k) if start is None else np.array(start, dtype=float)
    for j, v in fixed.items():
        b[j] = v
    ll = penalized_loglik(b, X, events, trials)
    if len(free) == 0:
        return b, ll
    for _ in range(max_iter):
        p = 1 / (1 + np.exp(-(X @ b)))
        w = trials * p * (1 - p)
        info = X.T @ (X * w[:, None])
        inv = np.linalg.inv(info)
        # leverages of the weighted hat matrix W^1/2 X I^-1 X' W^1/2
        h = np.einsum("ij,jk,ik->i", X, inv, X) * w
        score = X.T @ (events - trials * p + h * (0.5 - p))
        if np.max(np.abs(score[free])) < 1e-8:
            return b, ll
        step = np.zeros(k)
        step[free] = np.linalg.solve(info[np.ix_(free, free)], score[free])
        longest = np.max(np.abs(step))
        if longest > MAX_STEP:
            step *= MAX_STEP / longest
        for _halving in range(31):
            cand = b + step
            new = penalized_loglik(cand, X, events, trials)
            if new >= ll:
                break
            step /= 2
        else:  # no step along the direction raises l*: at the maximum up to rounding,
            if np.max(np.abs(score[free])) < 1e-6:  # or stuck, which is reported
                return b, ll
            break
        b, ll = cand, new
        if np.max(np.abs(step)) < 1e-10:
            return b, ll
    raise FirthNotConverged(
        f"Firth's penalized likelihood did not converge in {max_iter} iterations "
        f"(largest modified score {np.max(np.abs(score[free])):.3g})."
    )


def firth_logit(X, events, trials, level: float = 0.95) -> FirthFit:
    """Firth's fit of ``events`` out of ``trials`` on the design ``X`` (first column the
    constant), with profile penalized-likelihood intervals and p-values."""
    from scipy.optimize import brentq
    from scipy.stats import chi2

    X = np.asarray(X, dtype=float)
    events = np.asarray(events, dtype=float)
    trials = np.asarray(trials, dtype=float)
    b, ll = _fit(X, events, trials)
    crit = chi2.ppf(level, 1)
    k = X.shape[1]
    lows, highs, pvals = np.full(k, np.nan), np.full(k, np.nan), np.full(k, np.nan)
    for j in range(1, k):

        def dev(c, j=j):
            _, llc = _fit(X, events, trials, fixed={j: c}, start=b)
            return 2 * (ll - llc) - crit

        for side, out in ((-1, lows), (1, highs)):
            step, c = 1.0, b[j]
            while dev(c + side * step) < 0 and step < 64:
                step *= 2
            out[j] = (
                brentq(dev, b[j], b[j] + side * step, xtol=1e-10) if step < 64 else side * math.inf
            )
        _, ll0 = _fit(X, events, trials, fixed={j: 0.0}, start=b)
        pvals[j] = float(chi2.sf(max(2 * (ll - ll0), 0.0), 1))
    return FirthFit(params=b, ci_low=lows, ci_high=highs, p_values=pvals, loglik=ll)
