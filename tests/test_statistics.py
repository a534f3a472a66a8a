"""Statistics against values computed elsewhere: Newcombe (1998), hand calculation,
closed forms, and numpy on the expanded sample."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta as beta_dist
from scipy.stats import norm

from analysis.cohort import ProfileCube
from analysis.params import Params
from analysis.statistics import (
    age_summary_from_counts,
    condition_combinations,
    proportion_ci,
    risk_condition_regression,
    smd_binary,
    smd_continuous,
    table_one,
)

# Newcombe RG. Two-sided confidence intervals for the single proportion: comparison of
# seven methods. Stat Med 1998;17:857-872, worked examples (95% intervals, 4 decimals):
# method 3 = Wilson score, method 5 = Clopper-Pearson "exact".
NEWCOMBE = [
    # x, n, wilson, clopper-pearson
    (81, 263, (0.2553, 0.3662), (0.2527, 0.3676)),
    (15, 148, (0.0624, 0.1605), (0.0578, 0.1617)),
    (0, 20, (0.0000, 0.1611), (0.0000, 0.1684)),
    (1, 29, (0.0061, 0.1718), (0.0009, 0.1776)),
]


@pytest.mark.parametrize("x,n,wilson,exact", NEWCOMBE)
def test_wilson_and_clopper_pearson_match_newcombe_1998(x, n, wilson, exact):
    assert proportion_ci(x, n, 0.95, "wilson") == pytest.approx(wilson, abs=5e-5)
    assert proportion_ci(x, n, 0.95, "clopper_pearson") == pytest.approx(exact, abs=5e-5)


def agresti_coull_by_hand(x, n, level=0.95):
    z = norm.ppf(0.5 + level / 2)
    nt = n + z * z
    pt = (x + z * z / 2) / nt
    h = z * math.sqrt(pt * (1 - pt) / nt)
    return max(0.0, pt - h), min(1.0, pt + h)


def jeffreys_by_hand(x, n, level=0.95):
    a = (1 - level) / 2
    lo = 0.0 if x == 0 else beta_dist.ppf(a, x + 0.5, n - x + 0.5)
    hi = 1.0 if x == n else beta_dist.ppf(1 - a, x + 0.5, n - x + 0.5)
    return lo, hi


@pytest.mark.parametrize("x,n", [(81, 263), (15, 148), (0, 20), (1, 29), (20, 20), (121, 827)])
def test_agresti_coull_and_jeffreys_match_their_formulas(x, n):
    assert proportion_ci(x, n, 0.95, "agresti_coull") == pytest.approx(
        agresti_coull_by_hand(x, n), abs=1e-9
    )
    assert proportion_ci(x, n, 0.95, "jeffreys") == pytest.approx(jeffreys_by_hand(x, n), abs=1e-9)


@pytest.mark.parametrize("method", ["wilson", "clopper_pearson", "agresti_coull", "jeffreys"])
def test_edge_cases_zero_and_all(method):
    lo, hi = proportion_ci(0, 30, 0.95, method)
    assert lo == 0.0 and 0 < hi < 0.2
    lo, hi = proportion_ci(30, 30, 0.95, method)
    assert hi == 1.0 and 0.8 < lo < 1
    assert all(math.isnan(v) for v in proportion_ci(0, 0, 0.95, method))


def test_clopper_pearson_zero_of_n_is_the_rule_of_three_region():
    # exact upper bound for 0/n at 95% two-sided: 1 - 0.025**(1/n)
    assert proportion_ci(0, 50, 0.95, "clopper_pearson")[1] == pytest.approx(1 - 0.025 ** (1 / 50))


def test_age_summary_by_hand():
    a = age_summary_from_counts([20, 30, 40], [1, 2, 1])
    assert a.n == 4 and a.mean == 30
    assert a.sd == pytest.approx(math.sqrt(200 / 3))
    assert (a.min, a.max, a.median, a.q1, a.q3) == (20, 40, 30, 27.5, 32.5)
    # t interval: 30 +/- t(0.975, 3) * sd / 2, t = 3.182446
    assert a.mean_ci_low == pytest.approx(30 - 3.182446 * math.sqrt(200 / 3) / 2, abs=1e-5)


def test_age_summary_equals_numpy_on_the_expanded_sample():
    rng = np.random.default_rng(1)
    ages = rng.integers(14, 99, size=1001)
    values, counts = np.unique(ages, return_counts=True)
    a = age_summary_from_counts(values, counts)
    assert a.mean == pytest.approx(ages.mean())
    assert a.sd == pytest.approx(ages.std(ddof=1))
    assert a.median == np.percentile(ages, 50)
    assert (a.q1, a.q3) == (np.percentile(ages, 25), np.percentile(ages, 75))


def test_standardized_differences_by_hand():
    assert smd_binary(0.5, 0.3) == pytest.approx(0.2 / math.sqrt((0.25 + 0.21) / 2))
    assert smd_continuous(60, 10, 50, 12) == pytest.approx(10 / math.sqrt(122))


def cube_from(rows, params=None):
    """A profile cube built by hand: rows of (age, sex, qualifying episodes, cond_mask, n)."""
    p = params or Params()
    cells = pd.DataFrame(
        [
            {
                "age": a,
                "sex": s,
                "q4": q,
                "site_mask": 1 if q else 0,
                "cond_mask": c,
                "drug_mask": 0,
                "n": n,
                "drugs_sum": 0,
                "drugs_sq": 0,
            }
            for a, s, q, c, n in rows
        ]
    )
    return ProfileCube(
        columns=cells,
        params=p,
        severities=(4,),
        episode_cap=2,
        condition_lists=p.risk_conditions,
        drug_lists=p.risk_drugs,
        sites=p.pain_sites,
        drug_counts=True,
    )


def test_odds_ratio_equals_the_cross_product_ratio_with_woolf_interval():
    # pain cohort, women only: <45: 10 with a risk condition, 30 without; 45-54: 20 and 20.
    cube = cube_from(
        [(40, "F", 1, 4, 10), (40, "F", 1, 0, 30), (50, "F", 1, 4, 20), (50, "F", 1, 0, 20)]
    )
    t = risk_condition_regression(cube).set_index("term")
    row = t.loc["age 45-54 vs <45"]
    assert row["odds_ratio"] == pytest.approx((20 * 30) / (20 * 10), rel=1e-6)
    se = math.sqrt(1 / 20 + 1 / 20 + 1 / 10 + 1 / 30)
    assert row["ci_low"] == pytest.approx(3 * math.exp(-1.959964 * se), rel=1e-5)
    assert row["ci_high"] == pytest.approx(3 * math.exp(1.959964 * se), rel=1e-5)


def test_table_one_counts_and_smd_by_hand():
    # pain: 2 women aged 50 with hypertension (bit 4), 2 men aged 70 without;
    # rest: 4 women aged 40 without
    cube = cube_from([(50, "F", 1, 4, 2), (70, "M", 1, 0, 2), (40, "F", 0, 0, 4)])
    t = table_one(cube).set_index("variable")
    assert t.loc["female", "pain_n"] == 2 and t.loc["female", "pain_pct"] == 50
    assert t.loc["female", "rest_pct"] == 100
    assert t.loc["female", "smd"] == pytest.approx((0.5 - 1.0) / math.sqrt((0.25 + 0) / 2))
    assert t.loc["age, years", "pain_mean"] == 60
    assert t.loc["age, years", "pain_sd"] == pytest.approx(math.sqrt(400 / 3))
    assert t.loc["hypertension", "pain_n"] == 2


def test_combinations_count_each_exact_set_of_conditions():
    cube = cube_from(
        [(50, "F", 1, 4, 3), (50, "F", 1, 4 | 2, 2), (50, "F", 1, 0, 5), (50, "F", 0, 4, 9)]
    )
    c = condition_combinations(cube)
    assert c["n"].tolist() == [5, 3, 2]
    assert c.loc[1, "hypertension"] and not c.loc[1, "heart failure"]
    assert c.loc[2, "hypertension"] and c.loc[2, "heart failure"] and c.loc[2, "n_conditions"] == 2


@pytest.mark.parametrize(
    "method,sm",
    [
        ("wilson", "wilson"),
        ("clopper_pearson", "beta"),
        ("agresti_coull", "agresti_coull"),
        ("jeffreys", "jeffreys"),
    ],
)
def test_intervals_agree_with_statsmodels(method, sm):
    from statsmodels.stats.proportion import proportion_confint

    for x, n in [(1, 7), (5, 40), (121, 827), (376, 827), (1452, 2503), (3, 10_000)]:
        for level in (0.9, 0.95, 0.99):
            lo, hi = proportion_confint(x, n, alpha=1 - level, method=sm)
            assert proportion_ci(x, n, level, method) == pytest.approx(
                (max(0, lo), min(1, hi)), abs=1e-10
            )


@pytest.mark.parametrize("df", [1, 3, 10, 199, 200, 201, 500, 826, 2502, 10**6])
@pytest.mark.parametrize("p", [0.95, 0.975, 0.995])
def test_t_quantile_matches_scipy(df, p):
    from scipy.stats import t

    from analysis.estimates import t_quantile

    assert t_quantile(p, df) == pytest.approx(t.ppf(p, df), abs=1e-9)


def test_jeffreys_ends_at_0_and_1_where_statsmodels_keeps_the_beta_quantile():
    """Brown, Cai and DasGupta (2001, 4.1.2): at x = 0 the lower end is 0, at x = n the
    upper end is 1; statsmodels returns the Beta(1/2, n + 1/2) quantile instead."""
    from scipy.stats import beta
    from statsmodels.stats.proportion import proportion_confint

    sm_lo, sm_hi = proportion_confint(0, 20, alpha=0.05, method="jeffreys")
    assert sm_lo == pytest.approx(beta.ppf(0.025, 0.5, 20.5)) and sm_lo > 0
    lo, hi = proportion_ci(0, 20, 0.95, "jeffreys")
    assert lo == 0.0 and hi == pytest.approx(sm_hi)
    sm_lo, sm_hi = proportion_confint(20, 20, alpha=0.05, method="jeffreys")
    lo, hi = proportion_ci(20, 20, 0.95, "jeffreys")
    assert hi == 1.0 and sm_hi < 1 and lo == pytest.approx(sm_lo)


@pytest.mark.parametrize("x,n", [(1, 0), (5, 4), (1.5, 10), (-1, 10), (2, 10.5)])
def test_impossible_counts_are_refused(x, n):
    with pytest.raises(ValueError):
        proportion_ci(x, n)
