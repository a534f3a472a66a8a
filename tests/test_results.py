"""The results table and the network of sites (analysis.results): what a site's
results.csv holds, and how sites' rules and estimates combine."""

from __future__ import annotations

import pandas as pd

from analysis.results import (
    COLUMNS,
    _prediction_words,
    _shown,
    figures_rows,
    strictest_rule,
    write_results,
)
from analysis.rules import RULES, Rule


def test_the_strictest_rule_is_the_highest_threshold_and_a_common_rounding():
    """OpenSAFELY (8, rounding 5) with OHDSI (5, exact) is OpenSAFELY's; a rounding to 5
    with one to 3 rounds to 15 (their least common multiple), so both hold."""
    assert strictest_rule([None, None]) is None
    both = strictest_rule([RULES["opensafely"], RULES["ohdsi"]])
    assert (both.threshold, both.round_to) == (8, 5)
    odd = strictest_rule([Rule("a", threshold=5, round_to=5), Rule("b", threshold=10, round_to=3)])
    assert (odd.threshold, odd.round_to) == (10, 15)
    assert strictest_rule([RULES["ohdsi"], None]) is RULES["ohdsi"]  # off adds nothing


def test_a_withheld_value_reads_withheld_never_nan():
    assert _shown(None) == _shown(float("nan")) == "withheld"
    assert _shown(4.8321) == "4.83"
    assert _prediction_words({"prediction_low": float("nan")}) == ""
    assert _prediction_words({"prediction_low": 3.1, "prediction_high": 7.25}) == (
        "; a new unit: 3.10-7.25% (95% prediction interval)"
    )


def test_figures_become_result_rows_with_their_disclosure_status(tmp_path):
    figures = [
        {"id": "population.n", "value": 2503},
        {"id": "pain.pct_of_population", "value": 33.0, "ci_low": 31.2, "ci_high": 34.9,
         "numerator": 827, "denominator": 2503},
        {"id": "target.n", "value": None, "suppressed": True},
    ]  # fmt: skip
    rows = figures_rows("paper-03", figures, RULES["ohdsi"], "wilson")
    assert [r["disclosure"] for r in rows] == ["released", "released", "withheld"]
    assert rows[1]["method"] == "wilson" and rows[0]["method"] == ""  # no interval, no method
    assert [r["estimate"] for r in rows] == ["count", "percent", "count"]
    assert figures_rows("x", figures, None, "wilson")[2]["disclosure"] == "no rule"
    written = pd.read_csv(write_results(rows, tmp_path / "results.csv"))
    assert list(written.columns) == list(COLUMNS) and len(written) == 3
    assert written["value"].isna().tolist() == [False, False, True]
