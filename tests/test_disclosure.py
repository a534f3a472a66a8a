"""Disclosure control of the figures summary and the attrition table."""

import math

import pytest

from analysis.outputs import disclosure
from analysis.params import Params
from analysis.study import run_study
from conftest import pain, patient, write_db


def test_auto_is_off_for_synthetic_data_and_opensafely_otherwise():
    assert disclosure.resolve("auto", is_synthetic=True) is None
    assert disclosure.resolve("auto", is_synthetic=False).name == "opensafely"
    assert disclosure.resolve("off", is_synthetic=False) is None


def test_opensafely_redacts_7_or_fewer_and_rounds_to_5():
    r = disclosure.RULES["opensafely"]
    assert r.suppressed(7) and not r.suppressed(8) and r.suppressed(0)
    assert [r.round(x) for x in (8, 12, 13, 827)] == [10, 10, 15, 825]


def small_real_db(tmp_path):
    # 40 patients, 6 with pain (a count to redact), not marked synthetic
    pts = [patient(i) for i in range(40)]
    eps = [pain(i) for i in range(6)]
    return write_db(tmp_path / "real", {"patients": pts, "pain_episodes": eps})


def test_small_counts_are_redacted_with_what_depends_on_them(tmp_path):
    figs = {f["id"]: f for f in run_study(small_real_db(tmp_path)).figures()}
    assert figs["population.n"]["value"] == 40
    for i in ("pain.n", "pain.pct_of_population", "pain.age_mean", "pain.male_pct"):
        assert figs[i]["value"] is None and figs[i]["suppressed"], i
    assert figs["pain.pct_of_population"]["numerator"] is None


def test_rounded_percentages_are_computed_from_rounded_counts(tmp_path):
    pts = [patient(i) for i in range(103)]
    eps = [pain(i) for i in range(22)]
    figs = {
        f["id"]: f
        for f in run_study(
            write_db(tmp_path / "r", {"patients": pts, "pain_episodes": eps})
        ).figures()
    }
    assert figs["population.n"]["value"] == 105 and figs["pain.n"]["value"] == 20
    assert figs["pain.pct_of_population"]["value"] == pytest.approx(100 * 20 / 105)


def test_attrition_hides_a_small_step_and_every_step_after_it(tmp_path):
    s = run_study(small_real_db(tmp_path), Params(disclosure="ohdsi"))
    a = s.attrition().set_index("step")
    assert a.loc["all_patients", "n"] == 40
    assert math.isnan(a.loc["target", "n"]) and math.isnan(a.loc["candidates", "n"])


def test_synthetic_default_is_not_suppressed(default_db):
    figs = {f["id"]: f for f in run_study(default_db).figures()}
    assert "suppressed" not in figs["target.n"] and figs["target.n"]["value"] == 121


def test_a_lone_suppressed_cell_of_a_partition_takes_another_with_it():
    """A table designed to tempt subtraction: female + male = the published total."""
    import pandas as pd

    sex = pd.DataFrame(
        {
            "sex": ["female", "male"],
            "numerator": [4, 96],
            "denominator": [100, 100],
            "pct": [4.0, 96.0],
            "ci_low": [1.0, 90.0],
            "ci_high": [9.0, 99.0],
        }
    )
    r = disclosure.protect(
        sex.assign(method="wilson", level=0.95), "sex", disclosure.RULES["ohdsi"], Params()
    )
    t, n = r.table, r.withheld_cells
    assert n == 2 and t["numerator"].isna().all() and t["pct"].isna().all()
    # with the total known (100), no visible cell lets the suppressed 4 be recovered
    visible = t["numerator"].dropna()
    assert 100 - visible.sum() != 4 or len(visible) == 0


def test_partitions_within_a_table_are_protected_each():
    import pandas as pd

    ages = pd.DataFrame(
        {
            "group": ["all", "sex=F", "sex=M", "age <45", "age 45-64", "age >=65"],
            "n": [60, 57, 3, 20, 30, 10],
            "mean": [50.0, 49.0, 70.0, 30.0, 55.0, 70.0],
            "min": [20, 20, 60, 20, 45, 65],
            "max": [90, 85, 90, 44, 64, 90],
        }
    )
    for c in ("sd", "median", "q1", "q3", "mean_ci_low", "mean_ci_high"):
        ages[c] = 1.0
    t = disclosure.protect(ages, "age_summary", disclosure.RULES["ohdsi"]).table
    g = t.set_index("group")
    # men (3) suppressed, and women too: all minus women would give the men's mean
    assert pd.isna(g.loc["sex=M", "mean"]) and pd.isna(g.loc["sex=F", "mean"])
    assert g.loc["age <45", "n"] == 20 and not pd.isna(g.loc["all", "mean"])
    assert t["min"].isna().all() and t["max"].isna().all()  # extremes identify people


def test_rounding_recomputes_percentages_and_withholds_intervals():
    import pandas as pd

    sites = pd.DataFrame(
        {
            "site": ["hip", "knee"],
            "numerator": [12, 33],
            "denominator": [101, 101],
            "pct": [11.88, 32.67],
            "ci_low": [7.0, 24.0],
            "ci_high": [19.0, 42.0],
        }
    )
    sites = sites.assign(method="wilson", level=0.95)
    t = disclosure.protect(sites, "site_prevalence", disclosure.RULES["opensafely"], Params()).table
    assert t["numerator"].tolist() == [10, 35] and t["denominator"].tolist() == [100, 100]
    assert t["pct"].tolist() == [10.0, 35.0]
    # intervals are recomputed from the released counts (Wilson 10/100: Newcombe 1998's formula)
    z = 1.959963984540054
    centre, half = (
        (10 + z * z / 2) / (100 + z * z),
        z * math.sqrt(10 * 90 / 100 + z * z / 4) / (100 + z * z),
    )
    assert t.loc[0, "ci_low"] == pytest.approx(100 * (centre - half)) and t.loc[
        0, "ci_high"
    ] == pytest.approx(100 * (centre + half))


def test_real_data_with_disclosure_off_is_stamped_not_for_release(tmp_path):
    figs = run_study(small_real_db(tmp_path), Params(disclosure="off")).figures()
    assert all(f["release"] == "NOT FOR RELEASE" for f in figs)
    assert figs[0]["value"] == 40


def test_threshold_and_rounding_are_parameters(tmp_path):
    r = disclosure.resolve(
        Params(disclosure="ohdsi", disclosure_threshold=20, disclosure_rounding=10), False
    )
    # the decision is taken on the released (rounded) value: 14 -> 10 is withheld, 15 -> 20 is not
    assert r.suppressed(14) and not r.suppressed(15) and r.round(24) == 20


def test_two_thresholds_tell_nothing_beyond_the_rounded_count():
    """The attack: a count released at threshold t and withheld at t + 1 would be exactly
    t. Deciding on the rounded value, every count that rounds alike is treated alike."""
    for t in range(8, 30):
        rule = disclosure.resolve(Params(disclosure_threshold=t), False)
        for rounded in range(0, 40, 5):
            fates = {rule.release(c) for c in range(rounded - 2, rounded + 3) if c >= 0}
            assert len(fates) == 1, (t, rounded, fates)


def test_regression_terms_of_small_groups_are_withheld():
    import pandas as pd

    from analysis.outputs.disclosure import protect_regression

    t = pd.DataFrame(
        {
            "term": ["age 45-54 vs <45", "age >=75 vs <45", "male vs female"],
            "odds_ratio": [2.0, 5.0, 1.1],
            "ci_low": [1.0, 2.0, 0.9],
            "ci_high": [4.0, 9.0, 1.4],
            "p_value": [0.01, 0.001, 0.3],
        }
    )
    t.attrs["cells"] = pd.DataFrame(
        {
            "band": ["<45", "<45", "45-54", "45-54", ">=75", ">=75"],
            "sex": ["F", "M"] * 3,
            "events": [10, 12, 20, 21, 2, 1],
            "non_events": [30, 33, 20, 19, 1, 0],
        }
    )
    p = Params(age_band_edges=(45, 55, 75))
    out, n = protect_regression(t, disclosure.RULES["ohdsi"], p)
    # a cell below the threshold (2, 1, 1, 0 among the over-75s): the whole model is withheld,
    # because a fit on it would tell which side of the threshold the cell lies
    assert n == 3 and out["odds_ratio"].isna().all() and out["p_value"].isna().all()
    # with every cell releasable, the model is refitted on the released cells
    t.attrs["cells"] = t.attrs["cells"].assign(
        events=[10, 12, 20, 21, 12, 11], non_events=[30, 33, 20, 19, 9, 8]
    )
    out, n = protect_regression(t, disclosure.RULES["ohdsi"], p)
    assert n == 0 and out["odds_ratio"].notna().all()


def test_odds_ratios_do_not_show_a_withheld_cell():
    """The attack: two practices that differ only in a withheld cell (2 or 3 men aged 65-74
    with a risk condition) must release the same odds-ratio table."""
    import pandas as pd

    from analysis.outputs.disclosure import protect_regression

    outs = []
    for k in (2, 3):
        t = pd.DataFrame(
            {
                "term": ["male vs female"],
                "odds_ratio": [1.0],
                "ci_low": [0.5],
                "ci_high": [2.0],
                "p_value": [0.5],
            }
        )
        t.attrs["cells"] = pd.DataFrame(
            {
                "band": ["<45", "<45", "65-74", "65-74"],
                "sex": ["F", "M"] * 2,
                "events": [40, 30, 20, k],
                "non_events": [50, 60, 30, 40],
            }
        )
        outs.append(protect_regression(t, disclosure.RULES["opensafely"], Params())[0])
    assert outs[0].equals(outs[1])


def test_figures_never_let_a_withheld_count_be_recovered(tmp_path):
    """A tempting case: the target is withheld, so nothing derived from it may be shown,
    and every denominator is the released (rounded) count."""
    pts = [patient(i, birth="1930-01-01") for i in range(30)]
    eps = [pain(i) for i in range(14)] + [pain(i, date="2012-02-02") for i in range(3)]
    from conftest import dx as dx_

    figs = {
        f["id"]: f
        for f in run_study(
            write_db(
                tmp_path / "t",
                {
                    "patients": pts,
                    "pain_episodes": eps,
                    "diagnoses": [dx_(i, "401.9") for i in range(3)],
                },
            )
        ).figures()
    }
    assert figs["target.n"]["value"] is None
    for i in (
        "candidates.n",
        "candidates.pct_of_population",
        "candidates.per_1000",
        "candidates.per_gp_list",
    ):
        assert figs[i]["value"] is None and figs[i].get("ci_low") is None, i
    assert figs["pain.n"]["value"] == 15
    assert figs["pain.age_mean"]["denominator"] == 15 and figs["pain.male_pct"]["denominator"] == 15
    assert figs["population.age_min"]["value"] is None


def test_every_withheld_count_says_why(tmp_path):
    """Each count withheld in a table, by the generic step or by the table's own protector
    (Table 1, the attrition), has a reason: a small count, a complement, the rest of its
    denominator, or a count a released one would reveal (issue 27)."""
    import math

    from analysis import statistics
    from analysis.outputs import protect
    from analysis.outputs.disclosure import REASONS, RULES
    from analysis.params import Params
    from analysis.study import run_study
    from conftest import dx, pain, patient, write_db

    pts = [patient(i, sex="F" if i % 3 else "M") for i in range(60)]
    eps = [pain(i) for i in range(0, 60, 2)]
    dxs = [dx(i, "401.9") for i in range(0, 60, 7)]
    study = run_study(
        write_db(tmp_path / "p", {"patients": pts, "pain_episodes": eps, "diagnoses": dxs}),
        Params(disclosure="ohdsi"),
    )
    rule = RULES["ohdsi"]
    tables = {
        "table_one": statistics.table_one(study.cube, study.params),
        "sex": statistics.sex_table(study.cube),
        "condition_prevalence": statistics.condition_prevalence(study.cube, study.params),
    }
    said = 0
    for name, df in tables.items():
        p = protect(df, name, rule, study.params)
        from analysis.outputs.registry import spec_for

        for col in spec_for(name).counts:
            for label, before in df[col].items():
                after = p.table[col].get(label) if label in p.table.index else None
                if before == before and (after is None or math.isnan(after)):
                    assert p.reasons[col][label] in REASONS.values(), (name, col, label)
                    said += 1
    assert said >= 3  # the test saw withheld counts


def test_a_withheld_database_count_does_not_hide_the_population_in_a_notebook(tmp_path):
    """63 patients in the database, 3 of them never registered in the window: the
    database's count is withheld (60 and 63 would tell that 3 were left out), the
    population's is not. A notebook protects the study's attrition again as it saves it:
    the population and the pain cohort stay released (the 200-patient practice's flow
    diagram read "n withheld" in every box while its index said 200 patients)."""
    from analysis.outputs import protect

    pts = [patient(i) for i in range(60)]
    pts += [patient(100 + i, registered_to="2001-01-01") for i in range(3)]
    eps = [pain(i) for i in range(0, 60, 3)]
    study = run_study(
        write_db(tmp_path / "p", {"patients": pts, "pain_episodes": eps}),
        Params(disclosure="ohdsi"),
    )
    once = study.attrition()
    twice = protect(once, "attrition", study.disclosure_rule, study.params).table
    for t in (once, twice):
        n = dict(zip(t["step"], t["n"], strict=True))
        assert math.isnan(n["database"]) and n["all_patients"] == 60 and n["pain"] == 20
