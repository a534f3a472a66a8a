"""A brute-force attacker of a whole batch, written apart from the auditor (issue 26).

It reads only what a batch released (every run's ``results.csv`` and tables, as CSV) about a
small practice whose patients are of kinds: sex (F, M) x age (50, 60, 70 or 80; the practice
has nobody aged 60, the attacker does not know it) x pain (none, or recurrent pain with
hypertension). It knows the practice is of that shape (more than a real attacker knows:
every data set it keeps is one a real attacker keeps too), and enumerates every count of the
kinds consistent with every released count (exact: the ``ohdsi`` rule releases exact
counts). It then reports every count the batch withheld (a blank cell of a table, a
withheld figure) that is small (1 to 4) and pinned: none cannot be told from some, and its
feasible range is narrower than 5; and every union of kinds of 1 to 4 patients that the
released counts pin exactly. Means and SDs of age are left to the tests of attacks 1 and 5:
with four ages only, they would pin what real ages (any year of a band) do not.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

AGES = {"young": 50, "late": 60, "middle": 70, "old": 80}
KINDS = [(s, a, p) for s in "FM" for a in AGES for p in ("none", "recurrent")]
THRESHOLD = 5


def kinds(sex=None, ages=None, pain=None) -> frozenset:
    """The kinds of patient a released number counts (sex, ages in years, pain status)."""
    return frozenset(
        i
        for i, (s, a, p) in enumerate(KINDS)
        if (sex is None or s == sex)
        and (ages is None or AGES[a] in ages)
        and (pain is None or p == pain)
    )


def _older(age):
    return {v for v in AGES.values() if v >= age}


def _band(label: str):
    """Ages of a band label ('65-74', '>=75', '<45', '50-54')."""
    label = label.replace("age ", "").strip()
    if label.startswith(">="):
        return {v for v in AGES.values() if v >= int(label[2:])}
    if label.startswith("<"):
        return {v for v in AGES.values() if v < int(label[1:])}
    lo, hi = (int(x) for x in label.split("-"))
    return {v for v in AGES.values() if lo <= v <= hi}


def _num(x):
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _rows(path: Path):
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


class Released:
    """Everything the attacker reads: counts (kinds, value) and means/SDs (kinds, printed
    value, decimals)."""

    def __init__(self):
        self.counts: list[tuple[frozenset, int]] = []
        self.means: list[tuple[frozenset, float, int]] = []
        self.sds: list[tuple[frozenset, float, int]] = []
        self.withheld: dict[frozenset, str] = {}  # kinds of a withheld count -> where
        self.read: dict[str, int] = {}

    def count(self, ks, v, source):
        v = _num(v)
        if v is not None:
            self.counts.append((frozenset(ks), round(v)))
            self.read[source] = self.read.get(source, 0) + 1
        elif ks:
            self.withheld.setdefault(frozenset(ks), source)

    def moments(self, ks, mean, sd, source):
        for value, out in ((_num(mean), self.means), (_num(sd), self.sds)):
            if value is not None:
                text = f"{value}"
                dec = len(text.split(".")[1]) if "." in text else 0
                out.append((frozenset(ks), value, min(dec, 1)))
                self.read[source] = self.read.get(source, 0) + 1


def read_batch(folder: Path) -> Released:
    """Every number the batch in ``folder`` released that counts patients of the twelve
    kinds (or summarises their ages)."""
    r = Released()
    pain = kinds(pain="recurrent")
    for run in sorted(p for p in folder.iterdir() if (p / "manifest.json").exists()):
        params = json.loads((run / "manifest.json").read_text())["resolved_parameters"]
        elderly = int(params["elderly_age"])
        old = _older(elderly)
        for row in _rows(run / "results.csv"):
            var, value, num = row["variable"], row["value"], row["numerator"]
            src = f"{run.name}/results.csv"
            to = {
                "database.n": (kinds(), value),
                "population.n": (kinds(), value),
                "population.female_pct": (kinds(sex="F"), num),
                "population.elderly_pct": (kinds(ages=old), num),
                "pain.n": (pain, value),
                "pain.pct_of_population": (pain, num),
                "pain.male_pct": (kinds(sex="M", pain="recurrent"), num),
                "pain.recurrent_pct": (pain, num),
                "pain.elderly_pct": (kinds(ages=old, pain="recurrent"), num),
                "pain_risk.n": (pain, value),
                "pain_risk.pct_of_pain": (pain, num),
                "target.n": (kinds(ages=old, pain="recurrent"), value),
                "target.pct_of_pain": (kinds(ages=old, pain="recurrent"), num),
            }
            if var in to:
                r.count(*to[var], src)
            for group, ks in (("population", kinds()), ("pain", pain)):
                if var == f"{group}.age_mean":
                    r.moments(ks, value, None, src)
                if var == f"{group}.age_sd":
                    r.moments(ks, None, value, src)
        tables = run / "tables"
        for row in _rows(tables / "sex.csv"):
            r.count(kinds(sex=row["sex"][0].upper()), row["numerator"], "sex")
        for row in _rows(tables / "age_by_sex_counts.csv"):
            r.count(kinds(sex=row["sex"], ages={int(row["age"])}), row["n"], "age_by_sex_counts")
        for row in _rows(tables / "age_sex_pyramid.csv"):
            ages = _band(row["age_group"])
            r.count(kinds(sex="F", ages=ages), row["female"], "age_sex_pyramid")
            r.count(kinds(sex="M", ages=ages), row["male"], "age_sex_pyramid")
        for row in _rows(tables / "age_summary.csv"):
            g = row["group"]
            ks = kinds() if g == "all" else kinds(sex=g[-1]) if g.startswith("sex=") else (
                kinds(ages=_band(g)))  # fmt: skip
            r.count(ks, row["n"], "age_summary")
            r.moments(ks, row["mean"], row["sd"], "age_summary")
        for row in _rows(tables / "table_one.csv"):
            sides = {"pain": "recurrent", "rest": "none"}
            for side, p in sides.items():
                if row["variable"] == "patients, n":
                    r.count(kinds(pain=p), row[f"{side}_n"], "table_one")
                elif row["variable"] == "female":
                    r.count(kinds(sex="F", pain=p), row[f"{side}_n"], "table_one")
                elif row["variable"] == "aged >= 75":
                    r.count(kinds(ages=_older(75), pain=p), row[f"{side}_n"], "table_one")
                elif row["variable"] in ("any risk condition", "hypertension"):
                    r.count(kinds(pain=p) & pain, row[f"{side}_n"], "table_one")
                elif row["variable"] == "age, years":
                    r.moments(kinds(pain=p), row[f"{side}_mean"], row[f"{side}_sd"], "table_one")
        for row in _rows(tables / "condition_prevalence.csv"):
            if row["condition"] in ("hypertension", "any risk condition"):
                r.count(pain, row["numerator"], "condition_prevalence")
            r.count(pain, row["denominator"], "condition_prevalence")
        for row in _rows(tables / "condition_combinations.csv"):
            only_htn = row["hypertension"] in ("True", "1", "yes") and row["n_conditions"] == "1"
            if only_htn:
                r.count(pain, row["n"], "condition_combinations")
        for row in _rows(tables / "site_prevalence.csv"):
            if row["site"] == "knee":
                r.count(pain, row["numerator"], "site_prevalence")
            r.count(pain, row["denominator"], "site_prevalence")
        for row in _rows(tables / "attrition.csv"):
            to = {
                "database": kinds(),
                "all_patients": kinds(),
                "pain": pain,
                "pain_risk_condition": pain,
                "target": kinds(ages=old, pain="recurrent"),
            }
            if row["step"] in to:
                r.count(to[row["step"]], row["n"], "attrition")
            if row["step"] == "candidates" and _num(row["n"]) is not None:
                r.count(kinds(ages=old, pain="recurrent"), _num(row["n"]) / 0.5, "attrition")
        for row in _rows(tables / "sensitivity_grid.csv"):
            r.count(kinds(), row["population_n"], "sensitivity_grid")
            if row["min_severity"] == "4":
                r.count(pain, row["pain_n"], "sensitivity_grid")
            if (row["min_severity"], row["min_episodes"], row["risk_conditions"]) == (
                "4",
                "2",
                "all_seven",
            ):
                ks = kinds(ages=_older(int(row["elderly_age"])), pain="recurrent")
                r.count(ks, row["target_n"], "sensitivity_grid")
                c = _num(row["candidates"])
                if c is not None:
                    r.count(ks, c / float(row["benefit_fraction"]), "sensitivity_grid")
        for row in _rows(tables / "reproduction.csv"):
            if row["id"] in ("population.n", "pain.n", "pain_risk.n"):
                r.count(kinds() if row["id"] == "population.n" else pain, row["recomputed"],
                        "reproduction")  # fmt: skip
    # the cells of the tables whose rows are dropped when withheld (the attacker does not
    # see which): patients by sex and single year of age (or 5-year group), and Table 1's
    # pain cohort and rest by sex and by age >= 75
    if any((run / "tables" / "age_by_sex_counts.csv").exists() for run in folder.iterdir()):
        for sex in "FM":
            for age in AGES.values():
                r.withheld.setdefault(kinds(sex=sex, ages={age}), "age_by_sex_counts")
    for p in ("none", "recurrent"):
        for sex in "FM":
            r.withheld.setdefault(kinds(sex=sex, pain=p), "table_one")
        r.withheld.setdefault(kinds(ages=_older(75), pain=p), "table_one")
    return r


def attack(r: Released, truth: dict, seed: int = 0) -> dict:
    """Every count the batch withheld that holds 1 to 4 patients and that the released
    counts pin -> (low, high, true count, where it was withheld): none cannot be told from
    some, and every possible value lies within a range narrower than the threshold.

    The data sets consistent with every released count are enumerated depth first, each
    kind's count from 0 to the largest released count (no more patients than the practice
    holds); a branch is cut where a released count can no longer be met. The search stops
    early only once every small withheld count is seen to be protected (by data sets it
    found); else it runs to the end and its ranges are exact."""
    import random

    n = len(KINDS)
    unique = sorted(set(r.counts), key=lambda c: (sorted(c[0]), c[1]))
    mat = np.array([[i in ks for i in range(n)] for ks, _ in unique], dtype=int).reshape(-1, n)
    values = np.array([v for _, v in unique], dtype=int)
    n_max = int(values.max())
    rest = np.array([mat[:, k:].sum(axis=1) for k in range(n + 1)])  # kinds still open
    t = np.array([truth.get(k, 0) for k in KINDS])
    targets = [
        (np.array([i in ks for i in range(n)], dtype=int), where)
        for ks, where in r.withheld.items()
    ]
    targets = [(m, where) for m, where in targets if 1 <= int(m @ t) < THRESHOLD]
    tm = np.array([m for m, _ in targets], dtype=int).reshape(-1, n)
    lo = np.full(len(targets), np.iinfo(int).max)
    hi = np.full(len(targets), -1)
    x, done = np.zeros(n, int), np.zeros(len(values), int)
    order = random.Random(seed)
    solutions = 0

    class Enough(Exception):
        pass

    def go(k):
        nonlocal solutions
        if k == n:
            solutions += 1
            v = tm @ x
            np.minimum(lo, v, out=lo)
            np.maximum(hi, v, out=hi)
            if np.all(((lo == 0) & (hi >= 1)) | (hi - lo >= THRESHOLD)):
                raise Enough
            return
        # the counts this kind can take: within every released count it is in, with what
        # the kinds after it can still add (exactly the rest where it closes a count)
        mine = mat[:, k] == 1
        need = values[mine] - done[mine]
        after = n_max * rest[k + 1][mine]
        low = max(0, int((need - after).max(initial=0)))
        high = min(n_max, int(need.min(initial=n_max)))
        tries = list(range(low, high + 1))
        order.shuffle(tries)
        for v in tries:
            x[k] = v
            done[:] += v * mat[:, k]
            if np.all(done + n_max * rest[k + 1] >= values):
                go(k + 1)
            done[:] -= v * mat[:, k]
        x[k] = 0

    finished = True
    try:
        go(0)
    except Enough:
        finished = False
    assert solutions, "the truth itself is consistent: the attacker's reading is wrong"
    r.solutions, r.finished = solutions, finished
    return {
        tuple(KINDS[i] for i in np.flatnonzero(m)): (int(lo[j]), int(hi[j]), int(m @ t), where)
        for j, (m, where) in enumerate(targets)
        if not ((lo[j] == 0 and hi[j] >= 1) or hi[j] - lo[j] >= THRESHOLD)
    }
