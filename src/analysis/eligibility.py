"""Eligibility for a local treatment: expected candidates with an honest interval.

Expected candidates = (patients in the target subgroup) x (benefit fraction). The
interval carries two uncertainties at once, by a seeded Monte Carlo on proportions (not
on patients):

* sampling: the target proportion ``x / N`` of all patients is drawn from its Jeffreys
  posterior Beta(x + 1/2, N - x + 1/2) (Brown, Cai and DasGupta 2001), whose central
  interval is the Jeffreys interval with good frequentist coverage;
* assumption: the benefit fraction (the paper's "at least 50%") is drawn from its
  distribution: uniform on [benefit_low, benefit_high] by default, or Beta(a, b), or
  fixed at the point value.

The product's central interval at the confidence level is reported as a count for the
database, a percentage of all patients, a rate per 1000 patients and per GP list of the
reference size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from analysis.params import Params


@dataclass(frozen=True)
class EligibilityEstimate:
    target_n: int
    population_n: int
    benefit_fraction: float
    candidates: float  # expected count in the database
    candidates_low: float
    candidates_high: float
    pct_of_population: float
    pct_low: float
    pct_high: float
    per_1000: float
    per_1000_low: float
    per_1000_high: float
    per_gp_list: float
    per_gp_list_low: float
    per_gp_list_high: float
    gp_list_size: int
    level: float
    draws: int
    seed: int
    benefit_distribution: str

    def as_dict(self) -> dict:
        return asdict(self)


def benefit_draws(params: Params, rng: np.random.Generator, size: int) -> np.ndarray:
    """Draws of the benefit fraction (0-1) from its assumed distribution."""
    if params.benefit_distribution == "fixed" or params.benefit_low == params.benefit_high:
        return np.full(size, params.benefit_fraction)
    if params.benefit_distribution == "uniform":
        return rng.uniform(params.benefit_low, params.benefit_high, size)
    return rng.beta(params.benefit_beta_a, params.benefit_beta_b, size)


def proportion_draws(x: int, n: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """Draws of a proportion from the Jeffreys posterior Beta(x + 1/2, n - x + 1/2)."""
    return rng.beta(x + 0.5, n - x + 0.5, size)


def eligibility_draws(x: int, n: int, params: Params) -> np.ndarray:
    """Monte Carlo draws of the share of all patients expected to be candidates (0-1)."""
    rng = np.random.default_rng(params.seed)
    p = proportion_draws(x, n, rng, params.monte_carlo_draws)
    f = benefit_draws(params, rng, params.monte_carlo_draws)
    return p * f


def eligibility_estimate(target_n: int, population_n: int, params: Params | None = None) -> EligibilityEstimate:
    """Expected candidates for a local treatment with its interval (see module docstring)."""
    p = params or Params()
    share = eligibility_draws(target_n, population_n, p)
    a = (1 - p.confidence_level) / 2
    lo, hi = np.quantile(share, [a, 1 - a])
    point = target_n / population_n * p.benefit_fraction if population_n else np.nan
    return EligibilityEstimate(
        target_n=int(target_n), population_n=int(population_n),
        benefit_fraction=p.benefit_fraction,
        candidates=point * population_n, candidates_low=lo * population_n, candidates_high=hi * population_n,
        pct_of_population=100 * point, pct_low=100 * lo, pct_high=100 * hi,
        per_1000=1000 * point, per_1000_low=1000 * lo, per_1000_high=1000 * hi,
        per_gp_list=p.gp_list_size * point, per_gp_list_low=p.gp_list_size * lo,
        per_gp_list_high=p.gp_list_size * hi, gp_list_size=p.gp_list_size,
        level=p.confidence_level, draws=p.monte_carlo_draws, seed=p.seed,
        benefit_distribution=p.benefit_distribution,
    )


def eligibility_distribution(target_n: int, population_n: int, params: Params | None = None,
                             bins: int = 60):
    """Histogram of the Monte Carlo distribution of expected candidates per GP list."""
    import pandas as pd

    p = params or Params()
    per_list = eligibility_draws(target_n, population_n, p) * p.gp_list_size
    counts, edges = np.histogram(per_list, bins=bins)
    return pd.DataFrame({"per_gp_list_from": edges[:-1], "per_gp_list_to": edges[1:],
                         "draws": counts, "density": counts / counts.sum()})
