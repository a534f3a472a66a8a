"""Figures (issue 27): a figure whose values are all withheld is not drawn; one sentence
says why, and no file is written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import plots
from analysis.notebook import NotebookRun
from analysis.outputs import RELEASED
from analysis.params import Params


def _released(df, name):
    df.attrs[RELEASED] = name
    return df


@pytest.mark.parametrize(
    "draw",
    [
        lambda: plots.age_sex_pyramid(
            _released(
                pd.DataFrame(
                    {"age_group": ["50-54"], "group_lo": [50], "female": [np.nan], "male": [np.nan]}
                ),
                "age_sex_pyramid",
            ),
            "practice",
        ),  # fmt: skip
        lambda: plots.upset(_released(pd.DataFrame({"n": [np.nan], "a": [True]}), "x"), ["a"], "p"),
        lambda: plots.odds_ratio_forest(
            _released(
                pd.DataFrame(
                    {
                        "term": ["male vs female"],
                        "odds_ratio": [np.nan],
                        "ci_low": [np.nan],
                        "ci_high": [np.nan],
                    }
                ),
                "x",
            ),
            "p",
            "t",
        ),  # fmt: skip
        lambda: plots.age_distribution_by_sex(
            _released(pd.DataFrame({"sex": [], "age": [], "n": []}), "age_by_sex_counts"),
            _released(pd.DataFrame({"group": ["all"], "mean": [50.0]}), "age_summary"),
            "p",
        ),  # fmt: skip
    ],
)
def test_a_figure_with_nothing_released_is_not_drawn(tmp_path, draw):
    fig = draw()
    assert isinstance(fig, plots.NotDrawn)
    assert fig.sentence().endswith("is not drawn: every value it would show is withheld by "
                                   "disclosure control.")  # fmt: skip
    run = NotebookRun(notebook="t", params=Params(), data=tmp_path, out=tmp_path / "out")
    assert run.show_figure(fig, "empty") is None
    assert not list((tmp_path / "out").glob("figures/empty.*"))
    assert run.figures["empty"].startswith("not drawn")


def test_an_age_distribution_of_one_or_two_years_is_not_drawn():
    """A 200-patient practice under opensafely released one single year of 79: one bar is
    no distribution; the sentence says how many years were released and where the ages
    are shown instead."""
    counts = _released(
        pd.DataFrame({"sex": ["F", "F", "M"], "age": [58, 60, 58], "n": [10.0, np.nan, np.nan]}),
        "age_by_sex_counts",
    )
    summary = _released(
        pd.DataFrame({"group": ["sex=F", "sex=M"], "mean": [58.4, 58.6]}), "age_summary"
    )
    fig = plots.age_distribution_by_sex(counts, summary, "practice")
    assert isinstance(fig, plots.NotDrawn)
    assert "only 1 single year(s)" in fig.sentence() and "pyramid" in fig.sentence()


def test_a_tornado_without_its_base_is_not_drawn():
    """A swing is measured from the base estimate: with the base withheld (a 200-patient
    practice), the bars that remain would float and their labels overlap the note."""
    tor = _released(
        pd.DataFrame(
            {
                "parameter": ["elderly_age", "min_episodes"],
                "base_value": ["75", "2"],
                "base_estimate": [np.nan, np.nan],
                "low_value": ["65", None],
                "low_estimate": [37.5, np.nan],
                "high_value": ["65", None],
                "high_estimate": [37.5, np.nan],
                "swing": [0.0, np.nan],
                "withheld_values": ["75, 80, 85", "2, 3"],
            }  # fmt: skip
        ),
        "tornado",
    )
    fig = plots.tornado(tor, "practice")
    assert isinstance(fig, plots.NotDrawn) and "base estimate" in fig.sentence()


def test_the_flow_diagram_never_prints_nan():
    """With the database's count withheld, the population's share of it is said withheld
    (it read "nan% of the database")."""
    t = _released(
        pd.DataFrame(
            {
                "step": ["database", "all_patients", "pain"],
                "definition": ["d", "p", "c"],
                "n": [np.nan, 200.0, 65.0],
                "previous_step": ["", "database", "all_patients"],
                "pct_of_previous": [np.nan, np.nan, 32.5],
                "pct_of_all": [np.nan, 100.0, 32.5],
                "disclosure": ["opensafely"] * 3,
            }  # fmt: skip
        ),
        "attrition",
    )
    fig = plots.flow_diagram(t, "practice")
    texts = [x.get_text() for ax in fig.axes for x in ax.texts]
    assert "share of the database withheld" in texts
    assert not any("nan" in x.lower() for x in texts)


def test_the_flow_diagrams_layout_is_a_tree_of_spans():
    """Each step sits one level under the step it is drawn from; siblings share their
    parent's width; the population leaves room for the left-out box beside it."""
    import pandas as pd

    from analysis.plots import flow_box_lines, flow_layout

    steps = [  # (step, previous step, n)
        ("database", None, 120), ("excluded_born_after_index", "database", 3),
        ("all_patients", "database", 117), ("pain", "all_patients", 40),
        ("pain_risk_condition", "pain", 18), ("target", "pain", 12),
        ("candidates", "target", 6.0),
    ]  # fmt: skip
    attrition = pd.DataFrame(
        [{"step": s, "previous_step": p, "n": n, "definition": s, "pct_of_previous": 50.0,
          "pct_of_all": 25.0} for s, p, n in steps]
    )  # fmt: skip
    rows, left_out, depth, levels, box = flow_layout(attrition)
    assert [r["step"] for r in left_out] == ["excluded_born_after_index"]
    assert depth == {"database": 0, "all_patients": 1, "pain": 2, "pain_risk_condition": 3,
                     "target": 3, "candidates": 4} and levels == 5  # fmt: skip
    assert box["all_patients"] == (0.02, 0.64)  # the left-out box beside it
    assert box["pain"] == (0.02, 0.98)  # an only child keeps its parent's span
    assert box["pain_risk_condition"] == pytest.approx((0.02, 0.50))  # two siblings: halves
    assert box["target"] == pytest.approx((0.50, 0.98))
    assert box["candidates"] == pytest.approx((0.50, 0.98))
    assert flow_box_lines("target", rows["target"])[0].startswith("n = 12: 50")
    withheld = rows["target"].copy()
    withheld["n"] = float("nan")
    assert flow_box_lines("target", withheld)[0] == "n withheld"
