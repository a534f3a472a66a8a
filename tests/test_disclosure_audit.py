"""Disclosure by audit (issue 26): the attacks written as tests, the data built here.

Each test is an attack that an output checker ran on the released files of one run or one
batch of a small practice not marked synthetic; each now finds nothing.
"""

from __future__ import annotations

import pytest

from analysis.errors import AnalysisError
from analysis.params import Params
from analysis.study import run_study
from conftest import patient, write_db


def _old_practice(tmp_path, oldest=104):
    """91 patients aged 40-80, the oldest woman aged ``oldest``."""
    pts = [patient(i, birth=f"{1935 + i % 40}-03-01", sex="F" if i % 2 else "M") for i in range(90)]
    pts.append(patient(90, birth=f"{2015 - oldest}-01-01", sex="F"))
    return write_db(tmp_path / "practice", {"patients": pts})


@pytest.mark.parametrize("rule", ["ohdsi", "opensafely"])
@pytest.mark.parametrize(
    "changes, named",
    [
        ({"elderly_age": 120}, "elderly_age 120"),
        ({"age_band_edges": [45, 65, 95]}, "age_band_edges 95"),
    ],
)
def test_top_coding_at_90_holds_whatever_the_parameters(tmp_path, rule, changes, named):
    """Attack 2: the age cap was max(90, elderly_age, band edges), so `elderly_age: 120`
    released the oldest band's mean and SD with a woman aged 104 in it. Under a rule a
    threshold above 90 is now refused by name; at 90 or less every age of 90 and over
    counts as 90."""
    db = _old_practice(tmp_path)
    with pytest.raises(AnalysisError, match=named + r".*top-coded"):
        run_study(db, Params.from_mapping({"disclosure": rule, **changes}))
    study = run_study(db, Params.from_mapping({"disclosure": rule, "elderly_age": 90}))
    assert int(study.cube.columns["age"].max()) == 90
    # with the rule off (not for release) the exact ages are the analyst's own
    off = run_study(db, Params.from_mapping({"disclosure": "off", **changes}))
    assert int(off.cube.columns["age"].max()) == 104


def test_a_grid_cell_above_90_is_refused_under_a_rule(tmp_path):
    from analysis.sensitivity import Grid, sensitivity_table

    db = _old_practice(tmp_path)
    study = run_study(db, Params(disclosure="ohdsi"))
    grid = Grid(base={}, vary={"elderly_age": [("75", 75), ("95", 95)]}, source="grid.yaml")
    with pytest.raises(AnalysisError, match="grid.yaml: elderly_age 95"):
        sensitivity_table(study.cube, grid, study.params, rule=study.disclosure_rule)


# ----------------------------------------------------------------------------- the attacks
def _release(study, tables, audit=True, run_name="t", reports=None):
    """Release ``tables`` (name -> statistics function of the cube) as a notebook run
    does, into ``reports/<run_name>`` beside the data; ``audit=False``: the rules alone,
    as before the audit."""
    from pathlib import Path

    from analysis.notebook import NotebookRun
    from analysis.outputs import protect

    folder = Path(reports or Path(study.data_location).parent / "reports") / run_name
    run = NotebookRun(notebook="t", params=study.params, data=study.data_location,
                      out=folder, study=study)  # fmt: skip
    if audit:
        assert run.auditor is not None  # as notebook.start: the figures audited, recorded
    out = {}
    for name, fn in tables.items():
        df = fn(study.cube)
        if audit:
            out[name] = run.auditor.release(
                df,
                name,
                lambda force, df=df, name=name: protect(
                    df, name, run.rule, study.params, force=force
                ),
            ).table
        else:
            out[name] = protect(df, name, run.rule, study.params).table
    figs = {f["id"]: f for f in study.figures()}
    return out, figs, run


def _attack_one_practice(tmp_path):
    """Attack 1's practice: 5 women aged 76, 5 men aged 80, one woman aged 87, and 40
    women and 40 men under 75."""
    pts, i = [], 0
    for age, sex, k in ((76, "F", 5), (80, "M", 5), (87, "F", 1)):
        for _ in range(k):
            pts.append(patient(i, birth=f"{2015 - age}-01-01", sex=sex))
            i += 1
    for j in range(40):
        for sex, age in (("F", 30 + (j * 7) % 41), ("M", 31 + (j * 11) % 41)):
            pts.append(patient(i, birth=f"{2015 - age}-01-01", sex=sex))
            i += 1
    return write_db(tmp_path / "practice", {"patients": pts})


def _band_attacker(tables, figs, lo=75, hi=90):
    """An attacker written apart from the auditor: every multiset of ages of the oldest
    band consistent with what was released about it (its n, mean and SD; the 5-year
    groups of both sexes; the single years), enumerated. Returns the ages every solution
    holds beyond what a released count shows (pinned ages), and the number of solutions."""
    import math

    ages = tables["age_summary"].set_index("group").loc[f"age >={lo}"]
    n_released, mean, sd = ages["n"], ages["mean"], ages["sd"]
    if mean != mean or n_released != n_released:
        return set(), None  # the band's mean or size withheld: nothing to search
    step = 1 if figs["population.n"].get("value") == int(figs["population.n"]["value"]) else 5
    sizes = [int(n_released)] if step == 1 else range(int(n_released) - 2, int(n_released) + 3)
    shown = {}  # released lower bounds per age (single years)
    for _, r in tables["age_by_sex_counts"].iterrows():
        a = str(r["age"])
        if r["n"] == r["n"] and not a.endswith("+") and lo <= int(float(a)) <= hi:
            shown[int(float(a))] = shown.get(int(float(a)), 0) + int(r["n"])
    bins = {}  # 5-year groups released for both sexes: exact totals
    for _, r in tables["age_sex_pyramid"].iterrows():
        g = str(r["group_lo"])
        start = int(g.rstrip("+")) if g.rstrip("+").isdigit() else None
        if (
            start is not None
            and start >= lo
            and r["female"] == r["female"]
            and r["male"] == r["male"]
        ):
            bins[start] = int(r["female"] + r["male"])
    values = list(range(lo, hi + 1))
    solutions = []

    def fits(counts, n):
        s = sum(a * c for a, c in zip(values, counts, strict=True))
        m = s / n
        if not (mean - 0.05 <= m <= mean + 0.05):
            return False
        ss = sum(a * a * c for a, c in zip(values, counts, strict=True))
        v = (ss - n * m * m) / (n - 1) if n > 1 else 0.0
        if not (sd - 0.05 <= math.sqrt(max(v, 0)) <= sd + 0.05):
            return False
        for start, total in bins.items():
            if (
                sum(c for a, c in zip(values, counts, strict=True) if start <= a <= start + 4)
                != total
            ):
                return False
        return all(counts[a - lo] >= k for a, k in shown.items())

    def walk(i, left, counts, n, total):
        lo_sum, hi_sum = (mean - 0.05) * n, (mean + 0.05) * n
        if i == len(values):
            if left == 0 and fits(counts, n):
                solutions.append(tuple(counts))
            return
        # prune: the ages left can only add between left x this age and left x the oldest
        if total + left * values[i] > hi_sum or total + left * values[-1] < lo_sum:
            return
        for c in range(left + 1):
            counts.append(c)
            walk(i + 1, left - c, counts, n, total + c * values[i])
            counts.pop()

    for n in sizes:
        walk(0, n, [], n, 0)
    if not solutions:
        return set(), 0
    pinned = {a for k, a in enumerate(values) if min(s[k] for s in solutions) > shown.get(a, 0)}
    return pinned, len(solutions)


@pytest.mark.parametrize("rule", ["ohdsi", "opensafely"])
def test_attack_1_no_age_follows_from_one_notebooks_tables(tmp_path, rule):
    """Attack 1: one run of notebook 01 on a practice of 91 patients released, under the
    ohdsi rule, the oldest band's size, mean and SD (11, 78.8, 3.4), the women's 5-year
    groups and single years: searching every set of ages gave one answer, 76 x5, 80 x5
    and 87: the oldest woman's age. The attacker (apart from the auditor) finds her before
    the audit and nothing after it."""
    from analysis import statistics

    study = run_study(_attack_one_practice(tmp_path), Params(disclosure=rule))
    tables = {
        "age_summary": statistics.age_table,
        "sex": statistics.sex_table,
        "age_sex_pyramid": statistics.age_sex_counts,
        "age_by_sex_counts": statistics.age_by_sex_counts,
    }
    before, figs, _ = _release(study, tables, audit=False)
    after, figs, run = _release(study, tables, audit=True)
    pinned, n = _band_attacker(after, figs)
    assert pinned == set(), (pinned, n)
    if rule == "ohdsi":
        assert _band_attacker(before, figs)[0] == {87}  # the attacker works
        assert run.auditor.withheld_by_audit  # and the audit is what stopped it
        assert all(w["why"].startswith("with ") for w in run.auditor.withheld_by_audit)


def _attack_three_practice(tmp_path):
    from conftest import dx, pain

    pts, eps, dxs, i = [], [], [], 0
    for k, codes in ((28, []), (25, ["401.9"]), (5, ["401.9", "250.00"]), (2, ["250.00"])):
        for _ in range(k):
            pts.append(patient(i, birth=f"{1940 + i % 30}-05-01", sex="F" if i % 2 else "M"))
            eps.append(pain(i))
            dxs += [dx(i, c) for c in codes]
            i += 1
    for _ in range(40):
        pts.append(patient(i, birth=f"{1950 + i % 30}-05-01", sex="F" if i % 2 else "M"))
        i += 1
    return write_db(
        tmp_path / "practice", {"patients": pts, "pain_episodes": eps, "diagnoses": dxs}
    )


def _pattern_attacker(tables, threshold, step=1):
    """Apart from the auditor: every split of the pain cohort into none / hypertension
    only / both / diabetes only consistent with the released prevalences and
    combinations (an attacker who even knows no other group occurs; a count released
    rounded to ``step`` is any count that rounds to it), enumerated. Returns the withheld
    splits whose presence or exact count follows."""
    prev = tables["condition_prevalence"].set_index("condition")
    names = ("hypertension", "diabetes mellitus", "any risk condition")
    got = {k: prev.loc[k, "numerator"] for k in names}
    pain_released = prev["denominator"].iloc[0]
    half = step // 2

    def fits(true, released):
        return released != released or abs(true - released) <= half

    combos = {}
    for _, r in tables["condition_combinations"].iterrows():
        flags = [c for c in r.index if c not in ("n", "n_conditions", "pct_of_pain", "disclosure")]
        key = (bool(r["hypertension"]), bool(r["diabetes mellitus"]))
        if sum(bool(r[c]) for c in flags) == sum(key):
            combos[key] = r["n"]
    sols = []
    for pain in range(int(pain_released) - half, int(pain_released) + half + 1):
        for a in range(pain + 1):  # hypertension only
            for b in range(pain + 1 - a):  # both
                for c in range(pain + 1 - a - b):  # diabetes only
                    z = pain - a - b - c
                    split = {(False, False): z, (True, False): a, (True, True): b, (False, True): c}
                    if (
                        fits(a + b, got["hypertension"])
                        and fits(b + c, got["diabetes mellitus"])
                        and fits(a + b + c, got["any risk condition"])
                        and all(fits(split[k], v) for k, v in combos.items())
                    ):
                        sols.append({"both": b, "diabetes only": c})
    bad = {}
    for k, key in (("both", (True, True)), ("diabetes only", (False, True))):
        if key in combos:
            continue  # released
        lo, hi = min(s[k] for s in sols), max(s[k] for s in sols)
        if not ((lo == 0 and hi >= 1) or hi - lo >= threshold):  # presence or exact count
            bad[k] = (lo, hi)
    return bad


@pytest.mark.parametrize("rule", ["ohdsi", "opensafely"])
def test_attack_3_no_combination_follows_from_prevalence_and_combinations(tmp_path, rule):
    """Attack 3: notebook 02 released "any risk condition" 32 and hypertension 30 of 60,
    and the combinations 28 none and 25 hypertension only (2 rows left out): the hidden
    rows held 5 with hypertension and diabetes and 2 with diabetes only."""
    from analysis import statistics

    study = run_study(_attack_three_practice(tmp_path), Params(disclosure=rule))
    tables = {
        "condition_prevalence": statistics.condition_prevalence,
        "condition_combinations": statistics.condition_combinations,
    }
    rule_ = study.disclosure_rule
    before, _, _ = _release(study, tables, audit=False)
    after, _, run = _release(study, tables, audit=True)
    assert _pattern_attacker(after, rule_.threshold, rule_.round_to) == {}
    if rule == "ohdsi":
        found = _pattern_attacker(before, rule_.threshold)
        assert found == {"both": (5, 5), "diabetes only": (2, 2)}
        assert run.auditor.withheld_by_audit


def test_what_follows_from_earlier_releases_is_said_not_refused(tmp_path):
    """The figures every run writes (results.csv) are released before any table; where
    they alone pin a small group (data/edge_cases: no man in the population, from its
    size and its women), no number of a table can prevent it: the run goes on and the
    audit records it for the output checker."""
    from analysis import statistics
    from conftest import ROOT

    study = run_study(ROOT / "data" / "edge_cases", Params(disclosure="ohdsi"))
    tables, _, run = _release(study, {"age_summary": statistics.age_table}, reports=tmp_path)
    assert len(tables["age_summary"])
    said = [u["what"] for u in run.auditor.unresolved]
    assert any("would follow as 0" in w for w in said), said


# ----------------------------------------------------------------------------- across runs
def _attack_four_practice(tmp_path):
    """12 patients with recurrent pain: 10 aged 70 with hypertension, 2 aged 50 with
    hypertension; 20 with one episode; 60 without pain."""
    from conftest import dx, pain

    pts, eps, dxs, i = [], [], [], 0
    for k, age, episodes, codes in ((10, 70, 2, ["401.9"]), (2, 50, 2, ["401.9"]),
                                    (20, 60, 1, []), (60, 55, 0, [])):  # fmt: skip
        for _ in range(k):
            pts.append(patient(i, birth=f"{2015 - age}-03-01", sex="F" if i % 2 else "M"))
            eps += [pain(i, date=f"{2008 + e}-05-01") for e in range(episodes)]
            dxs += [dx(i, c) for c in codes]
            i += 1
    return write_db(
        tmp_path / "practice", {"patients": pts, "pain_episodes": eps, "diagnoses": dxs}
    )


def _grid_release(study, folder_name, audit=True):
    """Notebook 04's grid (elderly age 65 or 75) released into ``reports/<folder_name>``
    as the notebook does (its own cube, the ledger of the same folder)."""
    from pathlib import Path

    from analysis import sensitivity
    from analysis.notebook import NotebookRun
    from analysis.outputs import protect

    params = study.params
    grid = sensitivity.Grid(base={}, vary={"elderly_age": [("65", 65), ("75", 75)]}, source="g")
    data = Path(study.data_location)
    run = NotebookRun("04_sensitivity", params, data, data.parent / "reports" / folder_name)
    run.grid = grid
    db = run.open_database()
    run.cube = sensitivity.grid_cube(db, params, grid)
    db.close()
    t = sensitivity.sensitivity_table(run.cube, grid, params, rule=run.rule)
    if not audit:
        return protect(t, "sensitivity_grid", run.rule, params).table, run
    return run.auditor.release(
        t,
        "sensitivity_grid",
        lambda force: protect(t, "sensitivity_grid", run.rule, params, force=force),
    ).table, run


def _difference_attacker(recurrent, target_65, step):
    """Apart from the auditor: the recurrent patients outside the target subgroup at
    elderly age 65 (young, or without a risk group), from the two released counts (each
    any count that rounds to it). Returns its (low, high), or None where one is withheld."""
    if recurrent is None or target_65 != target_65:
        return None
    half = step // 2
    lows = [r - t for r in range(int(recurrent) - half, int(recurrent) + half + 1)
            for t in range(int(target_65) - half, int(target_65) + half + 1) if r >= t]  # fmt: skip
    return min(lows), max(lows)


@pytest.mark.parametrize("rule", ["ohdsi", "opensafely"])
def test_attack_4_no_count_follows_across_notebooks_of_one_batch(tmp_path, rule):
    """Attack 4: notebook 03 released 12 patients with recurrent pain; notebook 04's grid
    released the target subgroup at elderly age 65 as 10: the 2 young recurrent patients.
    Every run now audits with what earlier runs released into the same reports folder
    (the ledger), so the grid withholds that cell."""
    study = run_study(_attack_four_practice(tmp_path), Params(disclosure=rule))
    step = study.disclosure_rule.round_to
    threshold = study.disclosure_rule.threshold
    _, figs, run03 = _release(study, {}, run_name="03_eligibility")  # its figures
    recurrent = figs["pain.recurrent_pct"]["numerator"]

    def grid_65(t):
        return t.set_index("elderly_age").loc["65", "target_n"]

    if rule == "ohdsi":  # the attack works without the ledger (another folder)
        alone, _ = _grid_release(study, "elsewhere/04_sensitivity", audit=False)
        assert (recurrent, grid_65(alone)) == (12, 10)
        assert _difference_attacker(recurrent, grid_65(alone), step) == (2, 2)
    grid, run04 = _grid_release(study, "04_sensitivity")
    rng = _difference_attacker(recurrent, grid_65(grid), step)
    assert rng is None or rng[0] == 0 and rng[1] >= 1 or rng[1] - rng[0] >= threshold
    if rule == "ohdsi":
        assert grid_65(grid) != grid_65(grid)  # withheld
        assert run04.auditor.earlier_runs == ["03_eligibility"]
        assert any("03_eligibility: results pain.recurrent_pct" in w["why"]
                   for w in run04.auditor.withheld_by_audit)  # fmt: skip


@pytest.mark.parametrize("rule", ["ohdsi", "opensafely"])
def test_attack_4_in_the_other_order_the_figures_follow(tmp_path, rule):
    """The grid first, then notebook 03: its figures are audited with the grid before
    anything is shown, and the recurrent group is withheld (in every figure, table and
    sentence of the run)."""
    study = run_study(_attack_four_practice(tmp_path), Params(disclosure=rule))
    grid, _ = _grid_release(study, "04_sensitivity")
    target_65 = grid.set_index("elderly_age").loc["65", "target_n"]
    _, figs, run03 = _release(study, {}, run_name="03_eligibility")
    recurrent = figs["pain.recurrent_pct"]["numerator"]
    rng = _difference_attacker(recurrent, target_65, study.disclosure_rule.round_to)
    threshold = study.disclosure_rule.threshold
    assert rng is None or rng[0] == 0 and rng[1] >= 1 or rng[1] - rng[0] >= threshold
    if rule == "ohdsi":
        assert recurrent is None and target_65 == 10
        assert run03.auditor.withheld_by_audit[0]["table"] == "results"


def test_the_ledger_holds_released_numbers_only(tmp_path):
    """What the ledger keeps is what the files already show: no withheld value."""
    import json

    study = run_study(_attack_four_practice(tmp_path), Params(disclosure="ohdsi"))
    _release(study, {}, run_name="03_eligibility")
    _grid_release(study, "04_sensitivity")
    (ledger,) = (tmp_path / "practice").parent.glob("reports/.disclosure-ledger/*.jsonl")
    values = [e["value"] for line in ledger.read_text().splitlines()
              for e in json.loads(line)["entries"] if e["kind"] == "count"]  # fmt: skip
    assert 2.0 not in values and 0.0 not in values  # the small groups, never written
    assert None in values  # withheld: null


@pytest.mark.parametrize(
    "record",
    [
        '{"run": "x", "table": "t", "entries": [{"kind": "count", "value": 3, "group": '
        '[[["age", "__import__", [1]]]]}]}',
        '{"run": "x", "table": "t", "entries": [{"kind": "count", "value": "3", "group": [[]]}]}',
        '{"run": "x", "table": "t", "entries": [{"kind": "count", "value": 3, "group": '
        '[[["../etc", "is", ["F"]]]]}]}',
        "not json",
    ],
)
def test_an_altered_ledger_stops_the_release(tmp_path, record):
    """The ledger is a file in the reports folder: a record the audit did not write is
    refused by name (nothing is evaluated from it), and nothing is released."""
    study = run_study(_attack_four_practice(tmp_path), Params(disclosure="ohdsi"))
    _release(study, {}, run_name="03_eligibility")
    (ledger,) = tmp_path.glob("reports/.disclosure-ledger/*.jsonl")
    ledger.write_text(ledger.read_text() + record + "\n")
    with pytest.raises((AnalysisError, ValueError), match="ledger"):
        _release(study, {}, run_name="03_again")


@pytest.mark.parametrize("rule", ["ohdsi", "opensafely"])
def test_attack_5_means_do_not_move_between_runs(tmp_path, rule):
    """Attack 5: two runs with elderly age 75 and 120 moved the population's mean age from
    57.9 to 58.1 and placed the oldest patient at about 100-106. Under a rule every age of
    90 and over counts as 90 in every run (120 is refused), so runs that differ in any
    parameter release the same mean and SD of the same group; the second run is audited
    with the first's numbers (the ledger) and no age follows from the two together."""
    from analysis import statistics

    db = _old_practice(tmp_path)
    means = []
    for elderly in (75, 90):
        study = run_study(db, Params(disclosure=rule, elderly_age=elderly))
        tables, figs, run = _release(
            study, {"age_summary": statistics.age_table}, run_name=f"01_elderly_{elderly}"
        )
        means.append((figs["population.age_mean"]["value"], figs["population.age_sd"]["value"]))
        released = tables["age_summary"]["mean"].dropna()
        assert (released <= 90).all()
        if elderly == 90:
            assert run.auditor.earlier_runs == ["01_elderly_75"]
    assert means[0] == means[1]


def test_a_table_whose_counts_are_not_declared_is_refused(tmp_path, monkeypatch):
    """Every released count declares the group it counts; a table with counts and no
    declaration (nor a reason to lie outside the attacker's space) is refused under a
    rule, as an undeclared table is."""
    from analysis.outputs import auditor

    study = run_study(_attack_four_practice(tmp_path), Params(disclosure="ohdsi"))
    monkeypatch.delitem(auditor.DECLARED, "attrition")
    with pytest.raises(AnalysisError, match="attrition: its counts are not declared"):
        _release(study, {"attrition": lambda cube: study.attrition()})
    assert set(auditor.OUTSIDE) <= set(
        __import__("analysis.outputs.registry").outputs.registry.declared()
    )


def test_every_declared_table_matches_the_data(tmp_path):
    """The audit checks that the data satisfy every declared number (a wrong declaration
    stops the release): Table 1, the attrition and the estimate of a small practice."""
    from analysis import statistics

    study = run_study(_attack_four_practice(tmp_path), Params(disclosure="ohdsi"))
    tables, _, run = _release(
        study,
        {
            "table_one": lambda cube: statistics.table_one(cube, study.params),
            "attrition": lambda cube: study.attrition(),
        },
    )
    assert run.auditor.method
    assert len(tables["table_one"]) and len(tables["attrition"])


# ----------------------------------------------------------------------------- brute force
AGES = {"young": 50, "middle": 70, "old": 80}  # < 65, 65-74, >= 75


def _brute_practice(tmp_path, seed):
    """A small practice (not marked synthetic): patients aged 50, 70 or 80, each without
    pain or with recurrent pain and hypertension, in random numbers (0-6 per cell)."""
    import random

    from conftest import dx, pain

    rng = random.Random(seed)
    cells = {(a, p): rng.randint(0, 6) for a in AGES for p in ("none", "recurrent")}
    pts, eps, dxs, i = [], [], [], 0
    for (a, p), k in cells.items():
        for _ in range(k):
            pts.append(patient(i, birth=f"{2015 - AGES[a]}-03-01", sex="F" if i % 2 else "M"))
            if p == "recurrent":
                eps += [pain(i, date="2009-05-01"), pain(i, date="2011-05-01")]
                dxs.append(dx(i, "401.9"))
            i += 1
    folder = tmp_path / f"practice{seed}"
    write_db(folder, {"patients": pts, "pain_episodes": eps, "diagnoses": dxs})
    return folder, cells


def _brute_attacker(released: list[tuple[set, float]], n_max: int, threshold: int):
    """Apart from the auditor: every data set of the six cells (age class x none or
    recurrent) consistent with the released counts (each a set of cells and its exact
    count), enumerated; returns the range of every union of cells over them."""
    import itertools

    cells = [(a, p) for a in AGES for p in ("none", "recurrent")]
    ranges = {}
    for counts in itertools.product(range(n_max + 1), repeat=len(cells)):
        data = dict(zip(cells, counts, strict=True))
        if all(sum(data[c] for c in group) == v for group, v in released):
            for k in range(1, len(cells) + 1):
                for union in itertools.combinations(cells, k):
                    v = sum(data[c] for c in union)
                    lo, hi = ranges.get(union, (v, v))
                    ranges[union] = (min(lo, v), max(hi, v))
    return ranges


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_brute_force_attacker_finds_nothing_across_runs(tmp_path, seed):
    """Several small practices; in one reports folder, notebook 03 at elderly age 75 and
    at 65 (their figures) and notebook 04's grid (elderly 65 and 75); an attacker who reads
    every count they release together (population, elderly, pain, recurrent, pain and
    elderly, pain with a risk condition, target; the grid's target and pain cells) and
    enumerates every data set of the six cells consistent with them pins no small group
    (1 to 4 patients): none from some, or its exact count."""
    folder, truth = _brute_practice(tmp_path, seed)
    released = []
    every = {(a, p) for a in AGES for p in ("none", "recurrent")}
    pain = {(a, "recurrent") for a in AGES}

    def older(age):
        return {a for a in AGES if AGES[a] >= age}

    def add(cells, v):
        if v is not None and v == v:
            released.append((cells, int(v)))

    for elderly in (75, 65):
        study = run_study(folder, Params(disclosure="ohdsi", elderly_age=elderly))
        _, figs, _ = _release(study, {}, run_name=f"03_elderly_{elderly}")
        add(every, figs["population.n"]["value"])
        add({(a, p) for a in older(elderly) for p in ("none", "recurrent")},
            figs["population.elderly_pct"]["numerator"])  # fmt: skip
        add(pain, figs["pain.n"]["value"])
        add(pain, figs["pain.recurrent_pct"]["numerator"])
        add({(a, "recurrent") for a in older(elderly)}, figs["pain.elderly_pct"]["numerator"])
        add(pain, figs["pain_risk.n"]["value"])
        add({(a, "recurrent") for a in older(elderly)}, figs["target.n"]["value"])
    grid, _ = _grid_release(study, "04_sensitivity")
    for _, r in grid.iterrows():
        add({(a, "recurrent") for a in older(int(r["elderly_age"]))}, r["target_n"])
        add(pain, r["pain_n"])
    ranges = _brute_attacker(released, max(truth.values()) + 2, 5)
    pinned = {
        u: rng
        for u, rng in ranges.items()
        if 1 <= sum(truth[c] for c in u) < 5 and not (rng[0] == 0 and rng[1] >= 1)
        and rng[1] - rng[0] < 5
    }  # fmt: skip
    assert pinned == {}, (truth, released, pinned)


def test_the_release_sheet_writes_an_arrow_as_one():
    """A value with an arrow reads as one in release.md, not as '-&gt;' (issue 27)."""
    from analysis.outputs.release import _md

    assert _md("elderly_age 75 -> 65 | <b>") == "elderly_age 75 → 65 / &lt;b&gt;"


@pytest.mark.parametrize(
    "turn, named",
    [
        ("not json", "expected the batch's JSON"),
        ('{"exec": "../../../tmp/x", "before": []}', "expected the batch's JSON"),
        ('{"exec": "' + "a" * 32 + '", "before": ["../../x"]}', "expected the batch's JSON"),
        ('{"exec": "' + "a" * 32 + '", "before": [], "more": 1}', "expected the batch's JSON"),
        ('{"exec": "' + "a" * 32 + '", "before": []}', "not running"),
    ],
)
def test_a_hostile_batch_turn_is_refused(tmp_path, monkeypatch, turn, named):
    """The batch's order reaches a kernel through ANALYSIS_AUDIT_TURN. A value the batch did
    not set (a path, an execution that is not running, whose later runs' records the audit
    would then leave aside) is refused by name: nothing is released."""
    from analysis.outputs.ledger import TURN_ENV

    study = run_study(_attack_four_practice(tmp_path), Params(disclosure="ohdsi"))
    _release(study, {}, run_name="03_eligibility")
    monkeypatch.setenv(TURN_ENV, turn)
    with pytest.raises(AnalysisError, match=named):
        _release(study, {}, run_name="03_again")
    assert not (tmp_path / "tmp").exists()


def test_the_sensitivity_command_is_audited_as_notebook_04(tmp_path, capsys):
    """`analysis sensitivity` prints the grid that notebook 04 releases: audited, so no row
    shows a pain cohort and a target subgroup within it that differ by 1 to 4 patients (the
    command printed both before), and a withheld value reads "withheld", not NaN."""
    import json

    from analysis.cli import main

    db, _ = _brute_practice(tmp_path, 1)  # the rule alone released pain 19, target 15
    assert main(["sensitivity", "--data", str(db), "--disclosure", "ohdsi", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    shown = [r for r in rows if r["pain_n"] is not None and r["target_n"] is not None]
    assert rows and all(not 1 <= r["pain_n"] - r["target_n"] < 5 for r in shown)
    assert main(["sensitivity", "--data", str(db), "--disclosure", "ohdsi"]) == 0
    text = capsys.readouterr().out
    assert "withheld" in text and "NaN" not in text and max(map(len, text.splitlines())) < 160


def test_the_release_sheet_says_what_the_audit_did():
    from analysis.outputs.release import _audit_lines

    assert _audit_lines(None) == []
    said = _audit_lines(
        {"method": "integer programming over 40 atoms", "earlier_runs": ["01_cohort"],
         "withheld": [{"withheld": "sex F 7", "why": "with A and B released, C would follow"}],
         "follows_from_earlier_releases": [{"what": "men aged 60", "table": "sex"}]}
    )  # fmt: skip
    assert (
        said[0]
        == "Disclosure audit of this run's released numbers: integer programming over 40 atoms."
    )
    assert "folder: 01_cohort" in said[1]
    assert "- withheld by the audit: sex F 7 (with A and B released, C would follow)" in said
    assert any(s.startswith("- **to check**: men aged 60") for s in said)
    quiet = _audit_lines({"method": "m", "withheld": []})
    assert "- the audit withheld nothing beyond the rule." in quiet
    assert "no earlier run on the same data" in quiet[1]
