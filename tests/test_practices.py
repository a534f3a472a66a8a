"""Many practices: per-practice counts from the practice stratum, pooling checked against
statsmodels and closed forms computed here, funnel limits against the binomial formula, a
zero-count practice, disclosure of small practices, and the `practices` command."""

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom, norm, t
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.proportion import proportion_confint

from analysis import practices, synth
from analysis.contract import TABLES
from analysis.params import Params
from analysis.study import run_study
from conftest import pain, patient, run_cli, rx, write_db

X = np.array([12, 30, 7, 45, 20])
N = np.array([400, 600, 350, 900, 500])


def logits(x, n):
    return np.log(x / (n - x)), 1 / x + 1 / (n - x)


def expit(z):
    return 100 / (1 + math.exp(-z))


# ----------------------------------------------------------------------------- pooling
def test_fixed_effect_pool_is_the_inverse_variance_mean_of_the_logits():
    y, v = logits(X, N)
    w = 1 / v
    mu, se = np.sum(w * y) / np.sum(w), math.sqrt(1 / np.sum(w))
    q = np.sum(w * (y - mu) ** 2)
    r = practices.pool(X, N, "fixed")
    assert r.estimate == pytest.approx(expit(mu), rel=1e-12)
    assert r.ci_low == pytest.approx(expit(mu - norm.ppf(0.975) * se), rel=1e-12)
    assert r.i2 == pytest.approx(100 * max(0, (q - 4) / q), rel=1e-12)
    assert r.tau2 == 0 and r.prediction_low is None


def test_dersimonian_laird_pool_matches_statsmodels_and_the_closed_form():
    y, v = logits(X, N)
    w = 1 / v
    mu_fe = np.sum(w * y) / np.sum(w)
    q = np.sum(w * (y - mu_fe) ** 2)
    tau2 = max(0, (q - (len(y) - 1)) / (np.sum(w) - np.sum(w**2) / np.sum(w)))  # DL (1986)
    sm = combine_effects(y, v, method_re="dl")
    assert tau2 == pytest.approx(sm.tau2, rel=1e-10)
    r = practices.pool(X, N, "dl")
    assert r.tau2 == pytest.approx(tau2, rel=1e-10)
    assert r.estimate == pytest.approx(expit(sm.mean_effect_re), rel=1e-10)
    frame = sm.summary_frame(alpha=0.05)
    lo, hi = frame.loc["random effect", "ci_low"], frame.loc["random effect", "ci_upp"]
    assert (r.ci_low, r.ci_high) == pytest.approx((expit(lo), expit(hi)), rel=1e-8)
    # Higgins, Thompson & Spiegelhalter (2009): mu +- t(k-2) sqrt(tau2 + se^2)
    se = sm.sd_eff_w_re
    half = t.ppf(0.975, len(y) - 2) * math.sqrt(tau2 + se**2)
    assert r.prediction_low == pytest.approx(expit(sm.mean_effect_re - half), rel=1e-8)
    assert r.prediction_high == pytest.approx(expit(sm.mean_effect_re + half), rel=1e-8)
    assert r.prediction_high - r.prediction_low > r.ci_high - r.ci_low


def test_reml_maximizes_the_restricted_likelihood():
    from scipy.optimize import minimize_scalar

    y, v = logits(X, N)

    def neg_reml(tau2):
        w = 1 / (v + tau2)
        mu = np.sum(w * y) / np.sum(w)
        return 0.5 * (np.sum(np.log(v + tau2)) + np.log(np.sum(w)) + np.sum(w * (y - mu) ** 2))

    best = minimize_scalar(neg_reml, bounds=(0, 5), method="bounded", options={"xatol": 1e-12})
    r = practices.pool(X, N, "reml")
    assert r.tau2 == pytest.approx(best.x, abs=1e-6)


def test_a_zero_count_practice_is_corrected_and_said():
    x, n = np.array([0, 30, 7, 45]), np.array([200, 600, 350, 900])
    r = practices.pool(x, n, "dl")
    assert "0.5 added to both cells of 1 practice" in r.method
    y, v = logits(np.array([0.5, 30, 7, 45]), np.array([201, 600, 350, 900]))
    sm = combine_effects(y, v, method_re="dl")
    assert r.estimate == pytest.approx(expit(sm.mean_effect_re), rel=1e-10)


def test_identical_practices_have_no_heterogeneity():
    r = practices.pool(np.array([10, 10, 10]), np.array([200, 200, 200]), "dl")
    assert r.tau2 == 0 and r.i2 == 0


# ----------------------------------------------------------------------------- funnel
def test_funnel_limits_are_binomial_quantiles_interpolated():
    p0, n = 0.05, 400
    for prob in (0.025, 0.975, 0.001, 0.999):
        r = binom.ppf(prob, n, p0)
        a = (binom.cdf(r, n, p0) - prob) / (binom.cdf(r, n, p0) - binom.cdf(r - 1, n, p0))
        assert practices.binomial_limit(p0, n, prob) == pytest.approx((r - a) / n, rel=1e-12)
    lim = practices.funnel_limits(p0, [100, 1000, 10000])
    # the limits narrow with size and approach the normal approximation p0 +- z sqrt(p0 q0/n)
    widths = (lim["high_99_8"] - lim["low_99_8"]).to_numpy()
    assert widths[0] > widths[1] > widths[2]
    approx = 100 * 2 * norm.ppf(0.999) * math.sqrt(p0 * (1 - p0) / 10000)
    assert widths[2] == pytest.approx(approx, rel=0.03)


# ----------------------------------------------------------------------------- per practice
def _network(tmp_path, sizes_targets):
    """Practices of given sizes; ``t`` target patients each (aged 80, recurrent pain, a
    risk drug); the rest young without pain."""
    pts, pe, drugs, pid = [], [], [], 1
    for k, (size, tgt) in enumerate(sizes_targets):
        for i in range(size):
            old = i < tgt
            pts.append(
                patient(pid, birth="1930-01-01" if old else "1980-01-01", practice_id=f"P{k}")
            )
            if old:
                pe += [pain(pid, "2010-01-01"), pain(pid, "2012-01-01")]
                drugs.append(rx(pid, "B01AC06"))
            pid += 1
    return write_db(
        tmp_path / "net", {"patients": pts, "pain_episodes": pe, "prescriptions": drugs}
    )


def test_each_practice_is_counted_from_the_practice_stratum(tmp_path):
    db = _network(tmp_path, [(60, 5), (80, 0), (40, 12)])
    s = run_study(db, Params(disclosure="off"), detail=False, by_practice=True)
    table, left_out = practices.practice_table(s)
    assert left_out == 0
    got = {r.practice_id: (r.population_n, r.pain_n, r.target_n) for r in table.itertuples()}
    assert got == {"P0": (60, 5, 5), "P1": (80, 0, 0), "P2": (40, 12, 12)}
    lo, hi = proportion_confint(12, 40, alpha=0.05, method="wilson")
    row = table[table.practice_id == "P2"].iloc[0]
    assert (row.ci_low, row.ci_high) == pytest.approx((100 * lo, 100 * hi), rel=1e-9)
    # per GP list: the practice's rate x 0.5 x 1500
    assert row.per_gp_list == pytest.approx(12 / 40 * 0.5 * 1500)
    # the pool of the three, with the zero-count practice corrected
    out = practices.practices_summary(s)
    assert out["pooled"]["practices"] == 3 and "1 practice(s) with 0" in out["pooled"]["method"]


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    """A synthetic network of 4 practices (1,600 patients)."""
    return synth.generate(
        tmp_path_factory.mktemp("network") / "net", patients=1600, practices=4, seed=11
    )


def _practice_alone(folder, practice, out):
    """The contract folder of one practice's patients and their records."""
    out.mkdir()
    pts = pd.read_parquet(folder / "patients.parquet")
    ids = set(pts.patient_id[pts.practice_id == practice])
    for table in TABLES:
        df = pd.read_parquet(folder / f"{table}.parquet")
        df[df.patient_id.isin(ids)].to_parquet(out / f"{table}.parquet", index=False)
    return out


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"elderly_age": 80},
        {"min_severity": 7, "min_episodes": 3},
        {"population": "registered_on_index_date", "min_episodes": 1},
        {"risk_conditions": ("risk_condition_renal_impairment",), "risk_drugs": ()},
    ],
    ids=["paper", "elderly_80", "severe_3_episodes", "on_index_date_1_episode", "renal_only"],
)
def test_every_practice_counts_as_its_own_data_analysed_alone(network, tmp_path, changes):
    """The practice stratum (coarsened cells beside the cube, in the same query) gives each
    practice the population, pain cohort and target subgroup that the whole analysis gives
    on that practice's records alone; and the cube's own cells do not change."""
    p = Params(disclosure="off", **changes)
    s = run_study(network, p, by_practice=True)
    table, left_out = practices.practice_table(s)
    assert left_out == 0 and list(table.practice_id) == ["P01", "P02", "P03", "P04"]
    for row in table.itertuples():
        alone = run_study(_practice_alone(network, row.practice_id, tmp_path / row.practice_id), p)
        f = alone.cube.flag_arrays()
        expected = (alone.cube.n_total, alone.cube.count(f["pain"]), alone.cube.count(f["target"]))
        assert (row.population_n, row.pain_n, row.target_n) == expected
    assert sum(table.target_n) > 0 and sum(table.pain_n) > sum(table.target_n)
    whole = run_study(network, p)
    assert whole.cube.columns.keys() == s.cube.columns.keys()
    for k, v in whole.cube.columns.items():
        assert np.array_equal(v, s.cube.columns[k]), k
    # the stratum answers its own parameter set only
    with pytest.raises(ValueError, match="its own parameter set"):
        s.cube.practices.flag_arrays(Params(disclosure="off", elderly_age=p.elderly_age + 5))


def test_a_small_practice_is_left_out_and_counted_under_a_rule(tmp_path):
    # 5 patients, 1 target: left out; alone, its counts would be the network's total (a
    # figure of the same run) minus the table's, so the smallest other practice goes too
    db = _network(tmp_path, [(60, 10), (5, 1), (80, 20), (120, 30)])
    s = run_study(db, Params(disclosure="opensafely"), detail=False, by_practice=True)
    table, left_out = practices.practice_table(s)
    assert left_out == 2 and set(table.practice_id) == {"P2", "P3"}
    assert list(table.population_n) == [80, 120] and list(table.target_n) == [20, 30]  # rounded
    out = practices.practices_summary(s)
    assert out["practices_left_out"] == 2 and out["pooled"]["practices_left_out"] == 2
    assert out["pooled"]["practices"] == 2


@pytest.mark.parametrize(
    "sizes, rule, left",
    [
        # P1 (2 target) withheld; the network's target 21 minus P0's 10 and P2's 9 would
        # give it exactly: P2 (9, the smallest released target) is left out with it (11)
        ([(60, 10), (30, 2), (45, 9)], "ohdsi", {"P1", "P2"}),
        # two practices of 1 and 2 target patients: their sum, 3, is under 5: P0 goes too
        ([(60, 10), (30, 1), (45, 2), (50, 12)], "ohdsi", {"P0", "P1", "P2"}),
        # a zero is withheld too: P1 (no target patient) would be 10 - 10
        ([(60, 10), (30, 0)], "ohdsi", {"P0", "P1"}),
        # two small practices and a withheld network total (7, under opensafely's 8)
        ([(40, 4), (30, 3)], "opensafely", {"P0", "P1"}),
        ([(60, 10), (45, 9)], "ohdsi", set()),
        # 7 patients, 5 of them in the target subgroup: 2 without, by subtraction; left
        # out with the smallest other, so that the two together are not 7 and 5 again
        ([(60, 10), (7, 5), (45, 9)], "ohdsi", {"P1", "P2"}),
    ],
)
def test_left_out_practices_cannot_be_recovered_from_the_network_totals(
    tmp_path, sizes, rule, left
):
    s = run_study(
        _network(tmp_path, sizes), Params(disclosure=rule), detail=False, by_practice=True
    )
    table, left_out = practices.practice_table(s)
    everyone = {f"P{k}" for k in range(len(sizes))}
    assert set(table.practice_id) == everyone - left and left_out == len(left)
    # what subtraction from the totals gives: the left-out practices together, never fewer
    # target patients than the threshold (or nothing, when the total itself is withheld)
    hidden = sum(t for k, (_, t) in enumerate(sizes) if f"P{k}" in left)
    total = sum(t for _, t in sizes)
    assert not left or hidden >= 5 or s.disclosure_rule.release(total) is None


def test_the_practices_command_prints_the_documented_json(tmp_path):
    db = _network(tmp_path, [(60, 5), (80, 9), (40, 12), (70, 3)])
    r = run_cli("practices", "--data", str(db), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out["practices"][0]) == {
        "practice_id",
        "population_n",
        "pain_n",
        "target_n",
        "target_pct",
        "ci_low",
        "ci_high",
        "per_gp_list",
        "per_gp_list_low",
        "per_gp_list_high",
    }
    assert set(out["pooled"]) >= {
        "method",
        "estimate",
        "ci_low",
        "ci_high",
        "tau2",
        "i2",
        "prediction_low",
        "prediction_high",
        "practices",
    }
    x = np.array([p["target_n"] for p in out["practices"]])
    n = np.array([p["population_n"] for p in out["practices"]])
    y, v = logits(x, n)
    sm = combine_effects(y, v, method_re="dl")
    assert out["pooled"]["estimate"] == pytest.approx(expit(sm.mean_effect_re), rel=1e-10)
    reml = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis",
            "practices",
            "--data",
            str(db),
            "--json",
            "--set",
            "pool_method=reml",
        ],
        capture_output=True,
        text=True,
    )
    assert "REML" in json.loads(reml.stdout)["pooled"]["method"]
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "analysis",
            "practices",
            "--data",
            str(db),
            "--set",
            "pool_method=bayes",
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "pool_method" in bad.stderr  # refused input


# ----------------------------------------------------------------------------- synthetic networks
def test_a_synthetic_network_varies_between_practices_and_the_default_does_not(tmp_path):
    from analysis import synth

    cal = synth.load_calibration()
    assert synth.practice_effects(1, 1, cal) == [(0.0, 0.0)]
    db = synth.generate(tmp_path / "net", patients=12000, practices=12, seed=7)
    s = run_study(db, Params(), detail=False, by_practice=True)
    table, _ = practices.practice_table(s)
    r = practices.pool(table["target_n"].to_numpy(), table["population_n"].to_numpy())
    assert r.tau2 > 0 and r.i2 > 25  # over-dispersion, as in real networks
    one = synth.generate(tmp_path / "one", patients=2503, practices=1)
    figs = {f["id"]: f["value"] for f in run_study(one, Params()).figures()}
    assert (figs["population.n"], figs["pain.n"], figs["target.n"]) == (2503, 827, 121)


def test_practices_table_and_pool_are_declared_outputs(tmp_path):
    from analysis.outputs import save_table

    db = _network(tmp_path, [(60, 10), (80, 20), (70, 14)])
    s = run_study(db, Params(disclosure="opensafely"), detail=False, by_practice=True)
    table, left_out = practices.practice_table(s)
    released = save_table(table, "practices", tmp_path / "out", s.disclosure_rule, s.params)
    assert len(released.table) == 3
    pooled = pd.DataFrame([practices.practices_summary(s)["pooled"]])
    save_table(pooled, "practices_pooled", tmp_path / "out", s.disclosure_rule, s.params)
    assert (tmp_path / "out" / "tables" / "practices_pooled.csv").exists()


# ----------------------------------------------------------------------------- results that travel
@pytest.mark.slow
def test_sites_combine_from_their_results_tables_only(tmp_path):
    """Two sites run the practices notebook; `combine` reads their results.csv and manifests
    (no data), pools their practices as the sites' own tables say, and refuses sites whose
    parameters differ unless told, saying so on every output."""
    import shutil

    from analysis import synth
    from analysis.batch import load_batch, run_batch
    from analysis.errors import AnalysisError
    from analysis.results import combine

    folders = []
    for site, seed in (("site_a", 1), ("site_b", 2)):
        data = synth.generate(tmp_path / f"data_{site}", patients=2400, practices=4, seed=seed)
        f = tmp_path / f"{site}.yaml"
        f.write_text(f"name: {site}\ndata: {data}\nruns:\n  - notebooks: [07_practices]\n")
        b = load_batch(f, reports=tmp_path / "reports")
        assert [r["status"] for r in run_batch(b, jobs=1, progress=False)] == ["ok"]
        folders.append(b.out)
    for d in (tmp_path / "data_site_a", tmp_path / "data_site_b"):
        shutil.rmtree(d)  # combine never reads data
    out = combine(folders, tmp_path / "combined")
    assert out["units"] == 8 and out["left_out"] == 0
    # the same pool from the sites' own practices tables
    t = pd.concat(
        pd.read_csv(f / "default-07_practices" / "tables" / "practices.csv") for f in folders
    )
    expected = practices.pool(t["target_n"].to_numpy(), t["population_n"].to_numpy())
    assert out["pooled"]["estimate"] == pytest.approx(expected.estimate, rel=1e-12)
    assert (tmp_path / "combined" / "funnel.png").exists()
    results = pd.read_csv(tmp_path / "combined" / "results.csv")
    assert set(results["group"]) == {"practice", "pooled"}

    # a site with another elderly age is refused, naming the parameter
    man = folders[1] / "default-07_practices" / "manifest.json"
    m = json.loads(man.read_text())
    m["resolved_parameters"]["elderly_age"] = 80
    man.write_text(json.dumps(m))
    with pytest.raises(AnalysisError, match="site_b: no run uses the paper's definitions"):
        combine(folders, tmp_path / "combined2")  # by default, the paper's definitions
    with pytest.raises(AnalysisError, match=r"elderly_age \(site_a: 75; site_b: 80\)"):
        combine(folders, tmp_path / "combined2", scenario="default")
    combine(folders, tmp_path / "combined2", scenario="default", allow_different=True)
    index = (tmp_path / "combined2" / "index.html").read_text()
    assert "different parameters combined" in index and "elderly_age" in index
    pooled = pd.read_csv(tmp_path / "combined2" / "practices_pooled.csv")
    assert "elderly_age" in pooled["warning"].iloc[0]


def test_the_release_sheet_names_a_practice_released_in_one_run_only(tmp_path):
    """Two runs one threshold apart: a practice left out in one and released in the other
    tells its count by difference; the checker's list of pairs names it."""
    from analysis.outputs.release import _differences

    head = "practice_id,population_n,pain_n,target_n\n"
    for run, rows in {"e75": "P1,60,26,10\nP2,30,11,5\n", "e76": "P1,60,26,8\n"}.items():
        (tmp_path / run / "tables").mkdir(parents=True)
        (tmp_path / run / "tables" / "practices.csv").write_text(head + rows)
    found = _differences(tmp_path / "e75", tmp_path / "e76", threshold=5, step=1)
    assert found == [
        "practices (practice_id=P2): a row in one run, left out of the other",
        "practices.target_n (practice_id=P1): 10 vs 8, a difference below 5",
    ]


# ----------------------------------------------------------------------------- references
# BCG vaccine trials (Colditz et al. 1994), metafor's dat.bcg: treated and control groups'
# positive and negative counts; effects are log risk ratios.
BCG = {
    "tpos": [4, 6, 3, 62, 33, 180, 8, 505, 29, 17, 186, 5, 27],
    "tneg": [119, 300, 228, 13536, 5036, 1361, 2537, 87886, 7470, 1699, 50448, 2493, 16886],
    "cpos": [11, 29, 11, 248, 47, 372, 10, 499, 45, 65, 141, 3, 29],
    "cneg": [128, 274, 209, 12619, 5761, 1079, 619, 87892, 7232, 1600, 27197, 2338, 17825],
}


@pytest.mark.parametrize(
    "method, mu, se, tau2",
    [
        # metafor's documentation, rma(yi, vi, data = dat, method = "DL" / "REML" / "FE"):
        # estimate, se and tau^2 as printed (4 decimals)
        ("dl", -0.7141, 0.1787, 0.3088),
        ("reml", -0.7145, 0.1798, 0.3132),
        ("fixed", -0.4303, 0.0405, 0.0),
    ],
)
def test_the_pool_reproduces_metafors_bcg_example(method, mu, se, tau2):
    """Viechtbauer's metafor on the BCG trials: Q = 152.2330 on 12 df, so I² = 92.12%
    (Higgins and Thompson's I² from Q, as metafor prints it for DL)."""
    tp, tn, cp, cn = (np.array(BCG[k], float) for k in ("tpos", "tneg", "cpos", "cneg"))
    y = np.log(tp / (tp + tn)) - np.log(cp / (cp + cn))
    v = 1 / tp - 1 / (tp + tn) + 1 / cp - 1 / (cp + cn)
    got = practices.random_effects(y, v, method)
    assert got[0] == pytest.approx(mu, abs=5e-5) and got[1] == pytest.approx(se, abs=5e-5)
    assert got[2] == pytest.approx(tau2, abs=5e-5)
    assert got[3] == pytest.approx(100 * (152.2330 - 12) / 152.2330, abs=5e-3)


def test_one_practice_has_no_heterogeneity_to_estimate():
    """The default cohort is one practice: pool([121], [2503]) printed tau² 0.000 and
    I² 100% (a Q of rounding error); with fewer than two practices they are not estimable,
    and every output says so in the same words."""
    p = practices.pool([121], [2503])
    assert p.tau2 is None and p.i2 is None and p.prediction_low is None
    assert p.estimate == pytest.approx(100 * 121 / 2503, rel=1e-12)
    words = practices.heterogeneity(p.tau2, p.i2, p.practices)
    assert words == "tau\u00b2 and I\u00b2 not estimable (fewer than two practices)"
    assert practices.heterogeneity("0.0611", "93.5", "2000") == "tau\u00b2 0.061, I\u00b2 94%"
    assert practices.heterogeneity("", "", 5) == "tau\u00b2 withheld, I\u00b2 withheld"


def test_funnel_limits_lie_between_0_and_100_percent():
    """At 4.83% and 20 patients the 2.5% binomial quantile is 0 and the interpolation gave
    -4.66%; a limit of a proportion lies in [0, 100]%. Elsewhere the limit is Spiegelhalter's
    interpolated quantile: at p0 = 0.5, n = 10, prob 0.975, r = 8, F(8) = 0.98926,
    F(7) = 0.94531, alpha = (0.98926 - 0.975) / 0.04395 = 0.3244, limit (8 - 0.3244) / 10."""
    lim = practices.funnel_limits(0.0483, [20, 5, 1])
    assert (lim.drop(columns="n").to_numpy() >= 0).all()
    assert (lim.drop(columns="n").to_numpy() <= 100).all()
    assert lim.loc[0, "low_95"] == 0.0
    assert practices.binomial_limit(0.5, 10, 0.975) == pytest.approx(
        (8 - (0.9892578125 - 0.975) / (0.9892578125 - 0.9453125)) / 10, rel=1e-12
    )


def test_sections_between_practices_appear_only_where_there_are_two(tmp_path, small_db):
    """The single-practice default drew a funnel, a forest plot and "over 1 practices"; now
    a run with one practice says once why there is nothing to compare, writes no such
    figure, and its report, the batch index and the methods leave the sections out. A
    network of four shows them all."""
    from analysis import synth
    from analysis.batch import load_batch, run_batch

    four = synth.generate(tmp_path / "four", patients=2400, practices=4, seed=3)
    shown = {}
    for name, data in (("one", small_db), ("four", four)):
        f = tmp_path / f"{name}.yaml"
        f.write_text(f"name: {name}\ndata: {data}\nruns:\n  - notebooks: [07_practices]\n")
        b = load_batch(f, reports=tmp_path / "reports")
        assert [r["status"] for r in run_batch(b, jobs=1, progress=False)] == ["ok"]
        run = b.out / "default-07_practices"
        html = (run / "07_practices.html").read_text()
        shown[name] = {
            "figures": sorted(p.name for p in (run / "figures").glob("*.png")),
            "sections": [
                h for h in ("Funnel plot", "Forest plot", "The pooled estimate") if h in html
            ],  # fmt: skip
            "said": "The data hold one practice" in html,
            "index": "<h2>Practices</h2>" in (b.out / "index.html").read_text(),
            "methods": "Practices and pooling" in (b.out / "methods.md").read_text(),
        }
    assert shown["one"] == {
        "figures": [], "sections": [], "said": True, "index": False, "methods": False
    }  # fmt: skip
    assert shown["four"] == {
        "figures": ["funnel.png", "per_list_across_practices.png", "practice_forest.png"],
        "sections": ["Funnel plot", "Forest plot", "The pooled estimate"],
        "said": False,
        "index": True,
        "methods": True,
    }
