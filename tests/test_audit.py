"""The reproduction audit: GRIM and SD bounds against hand cases and brute force, and the
reproduction table on the synthetic default."""

import itertools
import math
import statistics as pystats
from fractions import Fraction
from pathlib import Path

import pytest

from analysis.audit import (
    consistency_audit,
    grim_consistent,
    grim_counts,
    load_published,
    reproduction_table,
    sd_bounds,
)
from analysis.study import run_study
from conftest import run_cli

# module-scoped fixtures (or fixed database schemas): one worker of a parallel run
pytestmark = pytest.mark.xdist_group("test_audit")


# --- GRIM --------------------------------------------------------------------------
def test_grim_mean_of_integers_by_hand():
    # the kind of case Brown and Heathers use: 28 integer responses cannot have a mean of
    # 5.19 (145/28 = 5.179 -> 5.18, 146/28 = 5.214 -> 5.21), but can have 5.18 or 5.21
    assert not grim_consistent("5.19", 28, percent=False)
    assert grim_counts("5.18", 28, percent=False) == [145]
    assert grim_counts("5.21", 28, percent=False) == [146]


def test_grim_with_several_items():
    # 28 participants x 2 items: granularity 1/56, so 5.19 becomes possible (291/56 = 5.196...)
    assert not grim_consistent("5.19", 28, percent=False)
    assert grim_counts("5.20", 28, percent=False, items=2) == [291]


def test_grim_is_uninformative_when_n_exceeds_the_precision():
    assert grim_consistent("58.52", 2503, percent=False)
    assert all(grim_consistent(f"{x / 100:.2f}", 150, percent=False) for x in range(100, 900))


@pytest.mark.parametrize(
    "printed,n,counts",
    [
        ("58.01", 2503, [1452]),
        ("4.8", 2503, [119, 120, 121]),
        ("50", 3, []),  # no k/3 is 50%
        ("33.3", 3, [1]),
        ("33.4", 3, []),
        ("12.5", 8, [1]),  # exactly on the printed value
        ("0.5", 100, []),  # 0.5% of 100 is not a whole patient...
        ("1", 100, [1]),
    ],
)
def test_grim_percentages_at_the_boundary_of_rounding(printed, n, counts):
    assert grim_counts(printed, n) == counts


def test_grim_accepts_both_halves_of_a_tie():
    # 1/8 = 12.5% prints as 13 (half up) or 12 (half even): both accepted
    assert 1 in grim_counts("13", 8) and 1 in grim_counts("12", 8)


# --- SD bounds against brute force -----------------------------------------------------
def brute_force(n, mean, low, high, require_extremes, at_least):
    d = len(mean.split(".")[1]) if "." in mean else 0
    h = Fraction(1, 2 * 10**d)
    m = Fraction(mean)
    sds = []
    for xs in itertools.combinations_with_replacement(range(low, high + 1), n):
        if not (m - h <= Fraction(sum(xs), n) <= m + h):
            continue
        if require_extremes and (xs[0] != low or xs[-1] != high):
            continue
        if at_least and sum(x >= at_least[1] for x in xs) < at_least[0]:
            continue
        sds.append(pystats.stdev(xs))
    return (min(sds), max(sds)) if sds else None


CASES = [
    (5, "3.4", 1, 7, True, None),
    (5, "3.4", 1, 7, False, None),
    (6, "4.0", 1, 7, True, (2, 6)),
    (6, "3.17", 1, 9, False, (1, 8)),
    (7, "5", 1, 9, True, (3, 7)),
    (4, "2.5", 1, 5, False, (2, 4)),
    (8, "4.38", 2, 8, True, (2, 7)),
    (6, "6.5", 1, 9, False, (4, 7)),
]


@pytest.mark.parametrize("n,mean,low,high,extremes,at_least", CASES)
def test_sd_bounds_equal_the_enumerated_minimum_and_maximum(n, mean, low, high, extremes, at_least):
    want = brute_force(n, mean, low, high, extremes, at_least)
    got = sd_bounds(n, mean, low, high, require_extremes=extremes, at_least=at_least)
    assert (got.min_sd, got.max_sd) == pytest.approx(want, abs=1e-12)


def test_sd_bounds_by_hand():
    # three integers 1..3 with mean 2.00: 1 and 3 must be present, so the only multiset
    # is {1, 2, 3}: SD 1
    b = sd_bounds(3, "2.00", 1, 3, require_extremes=True)
    assert b.min_sd == b.max_sd == 1.0
    # a mean printed as "2" is any value in [1.5, 2.5]: {1, 3, 3} (mean 2.33) is allowed
    b = sd_bounds(3, "2", 1, 3, require_extremes=True)
    assert b.max_sd == pytest.approx(pystats.stdev([1, 3, 3]))
    # two values in 0..10 with mean 5: SD from 0 (5, 5) to sqrt(50) (0, 10)
    b = sd_bounds(2, "5", 0, 10, require_extremes=False)
    assert (b.min_sd, b.max_sd) == pytest.approx((0.0, math.sqrt(50)))


# --- the published figures ---------------------------------------------------------------
@pytest.fixture(scope="module")
def audit():
    return consistency_audit().set_index("check")


def test_every_seed_figure_is_in_the_published_file():
    figures = {p.figure for p in load_published()}
    assert figures == {f"P{i}" for i in range(1, 11)}


def test_the_counts_each_percentage_implies(audit):
    assert audit.loc["GRIM: 58.01% of 2503", "result"] == "implied count(s): 1452"
    assert audit.loc["GRIM: 14.63% of 827", "result"] == "implied count(s): 121"
    assert "common [121]" in audit.loc["target subgroup: 14.63% of 827 and 4.8% of 2503", "result"]


def test_the_population_sd_is_possible_and_the_pain_cohort_sd_is_not(audit):
    assert audit.loc["SD 12.13 of the population's ages", "verdict"] == "possible"
    row = audit.loc["SD 1.52 of the pain cohort's ages"]
    assert row["verdict"] == "impossible"
    # by hand: 121 patients aged >= 75 and a mean below 57.5 force a spread far above 1.52:
    # with 121 at 75 and the other 706 as close as possible (353 at 54, 353 at 55),
    # SD = sqrt(sum (x - mean)^2 / 826)
    xs = [75] * 121 + [54] * 353 + [55] * 353
    assert row["result"].startswith(f"possible SD: {pystats.stdev(xs):.3f}")


def test_the_pain_cohort_sd_reads_only_as_a_99_percent_ci_half_width(audit):
    from scipy.stats import norm

    assert audit.loc["reading ±1.52 as a standard error of the mean", "verdict"] == "impossible"
    assert (
        audit.loc["reading ±1.52 as the half-width of a 95% CI of the mean", "verdict"]
        == "impossible"
    )
    row = audit.loc["reading ±1.52 as the half-width of a 99% CI of the mean"]
    implied = 1.52 * math.sqrt(827) / norm.ppf(0.995)  # 16.97, inside the possible 7.26-21.08
    assert row["verdict"] == "possible" and f"implied SD {implied:.2f}" in row["result"]
    assert round(implied, 2) == 16.97


def test_reproduction_table_on_the_synthetic_default(default_db):
    t = reproduction_table(run_study(default_db).figures()).set_index("id")
    reproducible = t.index.difference(["pain.age_sd", "benefit.fraction"])
    assert (t.loc[reproducible, "verdict"] == "reproduced").all(), t.loc[reproducible, "verdict"]
    assert t.loc["pain.age_sd", "verdict"].startswith("differs (the published value is impossible")
    assert t.loc["benefit.fraction", "verdict"].startswith("not computable")
    assert t.loc["population.female_pct", "recomputed"] == "58.01"


# ----------------------------------------------------------------------------- other papers
OTHER = Path(__file__).with_name("data")


def _verdicts(path):
    from analysis.audit import consistency_audit, load_published

    return dict(
        zip(
            *[consistency_audit(load_published(path))[c] for c in ("check", "verdict")], strict=True
        )
    )


def test_a_consistent_made_up_paper_passes_every_check():
    """200 patients aged 20-80, mean 45.30 (9060 / 200) and SD 10.00; 110 women (55.00%);
    50 with pain (25.00%), mean age 50.0, SD 9.50, 22 men (44.0%); 20 at risk (40.0%);
    5 in the target subgroup (10.00% of 50, 2.50% of 200)."""
    v = _verdicts(OTHER / "paper_consistent.csv")
    failing = {k: x for k, x in v.items() if x not in ("consistent", "possible")}
    assert failing == {k: "impossible" for k in failing if k.startswith("reading ±")}
    assert v["SD 10.00 of the population's ages"] == "possible"
    assert v["SD 9.50 of the pain cohort's ages"] == "possible"


def test_each_kind_of_inconsistency_is_reported_and_the_audit_goes_on():
    """Made up: 28 children aged 1-9 whose mean 5.19 no 28 integers give (145 / 28 = 5.18,
    146 / 28 = 5.21); 33.33% of 28 (9 / 28 = 32.14%, 10 / 28 = 35.71%); 10 with pain printed
    as 50.0% of 28 (that is 14); a target subgroup of 20.0% of 10 (2) and 10.00% of 28 (no
    count); an SD of 30.00 for ten ages in 1-9 (at most 4.2). The audit stopped at the first
    with "SD bounds: no 28 integers...", the very finding it exists for."""
    v = _verdicts(OTHER / "paper_inconsistent.csv")
    assert v["GRIM: mean 5.19 of 28 integer ages"] == "inconsistent"
    assert v["SD 2.00 of the population's ages"] == "impossible"
    assert v["GRIM: 33.33% of 28"] == "inconsistent"
    assert v["count 10 against 50.0% of 28"] == "inconsistent"
    assert v["target subgroup: 20.0% of 10 and 10.00% of 28"] == "inconsistent"
    assert v["SD 30.00 of the pain cohort's ages"] == "impossible"
    assert v["GRIM: 50.0% of 28"] == "consistent"  # the checks after the failures ran


def test_the_audit_command_and_its_words_read_any_paper():
    from analysis.audit import consistency_audit, load_published, narrative, reproduction_table

    for name, sd in (("paper_consistent.csv", "9.50"), ("paper_inconsistent.csv", "30.00")):
        path = OTHER / name
        done = run_cli("audit", "--published", str(path))
        assert done.returncode == 0, done.stderr
        assert "Compared with the published figures" in done.stdout  # not the paper's
        assert "reproduced" not in done.stdout.split("Consistency")[0]
        pub = load_published(path)
        checks = consistency_audit(pub)
        words = narrative(checks, reproduction_table(None, pub))
        assert "1.52" not in words and " 57" not in words and "synthetic" not in words
        if "inconsistent" in name:
            assert f"'± {sd}'" in words and "cannot be right as printed" in words


def test_the_audit_is_computed_once_and_a_strange_cache_file_is_ignored(tmp_path, monkeypatch):
    """The consistency audit depends on the published figures and the code alone: the
    second run reads it from the cache folder; a file there that is not the audit's own
    (a hostile or damaged one) is ignored and the audit computed again."""
    from analysis import audit

    monkeypatch.setenv("ANALYSIS_CACHE", str(tmp_path))
    first = audit.consistency_audit()
    (remembered,) = (tmp_path / "consistency-audit").glob("*.json")
    calls = []
    monkeypatch.setattr(audit, "_consistency_audit", lambda pub: calls.append(pub) or first)
    assert audit.consistency_audit().equals(first) and calls == []  # read, not computed
    remembered.write_text('[{"check": "x", "verdict": {"__reduce__": "os.system"}}]')
    assert audit.consistency_audit().equals(first) and len(calls) == 1  # computed again
