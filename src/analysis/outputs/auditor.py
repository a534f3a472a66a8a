"""The attacker, built in: what all the numbers a run releases tell together.

Every count a run releases is a sum over cells of its profile cube, and every mean and SD
of age a function of the sums of age and age² over cells. So an attacker who reads all of
a run's files has a linear problem (the issue's tau-ARGUS / sdcTable formulation):

* unknowns: the patients in each *atom*, the cube cells coarsened to what the released
  predicates (and the ages) can tell apart, integers >= 0;
* constraints: each released count (an interval where it was rounded), each released mean
  (a linear inequality either side: sum (a - m) x >= 0), each released SD (a linear
  relaxation of sum a² x over the intervals of mean and SD);
* for each quantity that was *not* released, its smallest and largest feasible value.

A withheld count is protected when its feasible range holds 0 and a value at or above the
threshold, or is at least the threshold wide; an age is protected when no patient's age is
pinned (the count of a group's patients at one age that is not released can be 0). The
problem is solved by HiGHS through :func:`scipy.optimize.milp` as an integer programme
when it has at most ``EXACT_ATOMS`` atoms (small practices, where exact answers come back),
else as its LP relaxation (a lower bound on what an attacker learns; said so).

Each released table declares what its numbers are functions of (:data:`DECLARED`: row ->
cube cells); :func:`audit_table` audits a table together with everything the run released
before it and, where it finds an unprotected quantity, withholds the released number of
the table that loses least (the smallest group), then audits again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

EXACT_ATOMS = 400
"""Largest problem solved as an integer programme (atoms); larger ones as an LP."""
MAX_ROUNDS = 50
"""Most secondary suppressions one table may need before the audit gives up (refuses)."""


@dataclass
class Entry:
    """One released (or withheld) number of a table, as a function of the cube's cells.

    ``kind`` is ``count`` (``value`` patients in ``mask``) or ``moments`` (mean and SD of
    age over ``mask``, with ``n`` patients). ``value`` is None where withheld."""

    table: str
    row: object  # the row's index in the table
    column: str
    label: str
    mask: np.ndarray
    kind: str = "count"
    value: float | None = None
    step: int = 1
    mean: float | None = None
    sd: float | None = None
    decimals: int = 1


@dataclass
class Finding:
    quantity: str
    low: float
    high: float
    method: str
    blamed: list = field(default_factory=list)  # labels of released entries involved

    def words(self) -> str:
        shown = ", ".join(self.blamed[:3]) + (" ..." if len(self.blamed) > 3 else "")
        rng = f"{_n(self.low)}" if self.low == self.high else f"{_n(self.low)}-{_n(self.high)}"
        return f"with {shown} released, {self.quantity} would follow as {rng}"


def _n(v) -> str:
    return "inf" if v == math.inf else f"{int(round(v))}"


# ----------------------------------------------------------------------------- problem
def _atoms(cube, masks: list[np.ndarray]):
    """Cells grouped by (membership in every mask, age): the atoms' member matrix (atoms x
    masks), their ages and their true counts."""
    age = np.asarray(cube.columns["age"], dtype=np.int64)
    n = np.asarray(cube.columns["n"], dtype=np.int64)
    member = np.column_stack([np.asarray(m, bool) for m in masks] + [np.zeros(len(n), bool)])
    key = np.column_stack([member.astype(np.int64), age])
    uniq, inverse = np.unique(key, axis=0, return_inverse=True)
    counts = np.bincount(inverse.ravel(), weights=n, minlength=len(uniq)).astype(np.int64)
    return uniq[:, :-2].astype(bool), uniq[:, -1].astype(float), counts


def _constraints(entries, member, ages):
    """Rows (coefficients over atoms, lower, upper) for every released number."""
    rows = []
    for j, e in enumerate(entries):
        col = member[:, j].astype(float)
        if e.kind == "count" and e.value is not None:
            half = e.step / 2
            lo = math.ceil(e.value - half) if e.step > 1 else e.value
            hi = math.ceil(e.value + half) - 1 if e.step > 1 else e.value
            rows.append((col, max(lo, 0), hi, e.label))
        elif e.kind == "moments" and e.mean is not None and not math.isnan(e.mean):
            h = 0.5 * 10 ** (-e.decimals)
            m_lo, m_hi = e.mean - h, e.mean + h
            rows.append((col * (ages - m_lo), 0.0, math.inf, e.label))
            rows.append((col * (ages - m_hi), -math.inf, 0.0, e.label))
            if e.sd is not None and not math.isnan(e.sd):
                s_lo, s_hi = max(e.sd - h, 0.0), e.sd + h
                big = max(m_lo * m_lo, m_hi * m_hi)
                small = 0.0 if m_lo <= 0 <= m_hi else min(m_lo * m_lo, m_hi * m_hi)
                # sum a² x = (N - 1) s² + N m², N = sum x, bounded by the intervals
                rows.append((col * (ages**2 - s_hi**2 - big), -math.inf, -(s_hi**2), e.label))
                rows.append((col * (ages**2 - s_lo**2 - small), -(s_lo**2), math.inf, e.label))
    return rows


class Problem:
    """The attacker's problem over the atoms (see the module docstring)."""

    def __init__(self, cube, entries: list[Entry], quantities: list[tuple[str, np.ndarray]]):
        masks = [e.mask for e in entries] + [q for _, q in quantities]
        self.member, self.ages, self.truth = _atoms(cube, masks)
        self.entries = entries
        self.k = len(entries)
        self.rows = _constraints(entries, self.member, self.ages)
        self.exact = len(self.truth) <= EXACT_ATOMS
        self.method = (
            f"integer programming over {len(self.truth)} atoms (HiGHS, scipy.optimize.milp)"
            if self.exact
            else f"the LP relaxation over {len(self.truth)} atoms (HiGHS; a lower bound on "
            "what an attacker learns)"
        )

    def quantity(self, i: int) -> np.ndarray:
        return self.member[:, self.k + i].astype(float)

    def solve(self, objective: np.ndarray, sense: int = 1) -> float:
        """min (sense 1) or max (sense -1) of objective . x over the feasible atoms."""
        from scipy.optimize import Bounds, LinearConstraint, milp

        A = np.array([r[0] for r in self.rows]) if self.rows else np.zeros((0, len(self.truth)))
        lb = np.array([r[1] for r in self.rows], dtype=float)
        ub = np.array([r[2] for r in self.rows], dtype=float)
        cons = [LinearConstraint(A, lb, ub)] if self.rows else []
        integrality = np.ones(len(self.truth)) if self.exact else np.zeros(len(self.truth))
        res = milp(
            sense * objective,
            constraints=cons,
            integrality=integrality,
            bounds=Bounds(0, np.inf),
            options={"disp": False, "time_limit": 30},
        )
        if res.status == 3 or res.x is None and res.status != 0:  # unbounded
            return math.inf if sense < 0 else 0.0
        if res.x is None:
            return math.inf if sense < 0 else 0.0
        return float(sense * res.fun)

    def blamed(self, q: np.ndarray) -> list[str]:
        """Released entries whose cells overlap the quantity's."""
        atoms = q > 0
        return [
            e.label
            for j, e in enumerate(self.entries)
            if (e.value is not None or e.mean is not None) and np.any(self.member[atoms, j])
        ]


def audit(cube, entries: list[Entry], quantities, threshold: int) -> tuple[list[Finding], str]:
    """The unprotected quantities among ``quantities`` ((label, mask, kind) with kind
    ``count`` or ``age``) given the released ``entries``; and the method used."""
    if not quantities:
        return [], "nothing withheld to audit"
    p = Problem(cube, entries, [(q[0], q[1]) for q in quantities])
    found = []
    # one witness first: the smallest total of every quantity (those at 0 are done)
    objective = np.zeros(len(p.truth))
    for i in range(len(quantities)):
        objective += p.quantity(i)
    witness_x = _witness(p, objective)
    for i, (label, _mask, kind) in enumerate(quantities):
        q = p.quantity(i)
        lo = 0.0 if witness_x is not None and float(q @ witness_x) == 0 else p.solve(q, 1)
        if kind == "age":
            if lo >= 1 - 1e-6:
                found.append(Finding(label, lo, lo, p.method, p.blamed(q)))
            continue
        hi = p.solve(q, -1)
        lo_i, hi_i = math.ceil(lo - 1e-6), hi if hi == math.inf else math.floor(hi + 1e-6)
        if not ((lo_i == 0 and hi_i >= threshold) or (hi_i - lo_i >= threshold)):
            found.append(Finding(label, lo_i, hi_i, p.method, p.blamed(q)))
    return found, p.method


def _witness(p: Problem, objective: np.ndarray):
    from scipy.optimize import Bounds, LinearConstraint, milp

    if not p.rows:
        return np.zeros(len(p.truth))
    A = np.array([r[0] for r in p.rows])
    res = milp(
        objective,
        constraints=[LinearConstraint(A, [r[1] for r in p.rows], [r[2] for r in p.rows])],
        integrality=np.ones(len(p.truth)) if p.exact else np.zeros(len(p.truth)),
        bounds=Bounds(0, np.inf),
        options={"disp": False, "time_limit": 30},
    )
    return None if res.x is None else np.round(res.x, 9)


# ----------------------------------------------------------------------------- declarations
def _num(v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _age_of(v):
    """A released age key: an int, or '90+' (top-coded): (low, high or None)."""
    text = str(v)
    if text.endswith("+"):
        return int(text[:-1]), None
    return int(float(text)), int(float(text))


def _age_mask(age, lo, hi):
    return (age >= lo) & (age <= hi) if hi is not None else age >= lo


def _cols(cube):
    c = cube.columns
    return np.asarray(c["age"]), np.asarray(c["sex"]).astype(str)


def _decl_age_summary(t, cube, params, step):
    from analysis.statistics import age_bands

    age, sex = _cols(cube)
    groups = {"all": np.ones(len(age), bool), "sex=F": sex == "F", "sex=M": sex == "M"}
    for label, lo, hi in age_bands(params):
        groups[f"age {label}"] = _age_mask(age, lo, hi)
    out = []
    for i, r in t.iterrows():
        m = groups.get(str(r["group"]))
        if m is None:
            continue
        n = _num(r["n"])
        out.append(
            Entry("age_summary", i, "n", f"age_summary n ({r['group']})", m, "count", n, step)
        )
        out.append(
            Entry(
                "age_summary",
                i,
                "mean",
                f"age_summary mean and SD ({r['group']})",
                m,
                "moments",
                n,
                step,
                mean=_num(r["mean"]),
                sd=_num(r["sd"]),
            )
        )
    return out


def _decl_sex(t, cube, params, step):
    age, sex = _cols(cube)
    out = []
    for i, r in t.iterrows():
        s = "F" if r["sex"] == "female" else "M"
        out.append(
            Entry(
                "sex",
                i,
                "numerator",
                f"sex {r['sex']}",
                sex == s,
                "count",
                _num(r["numerator"]),
                step,
            )
        )
        out.append(
            Entry("sex", i, "denominator", "sex denominator", np.ones(len(age), bool), "count",
                  _num(r["denominator"]), step)
        )  # fmt: skip
    return out


def _decl_pyramid(t, cube, params, step):
    age, sex = _cols(cube)
    out = []
    for i, r in t.iterrows():
        lo, hi = _age_of(r["group_lo"])
        hi = None if hi is None else lo + 4
        for col, s in (("female", "F"), ("male", "M")):
            out.append(
                Entry("age_sex_pyramid", i, col, f"age_sex_pyramid {col} {r['age_group']}",
                      (sex == s) & _age_mask(age, lo, hi), "count", _num(r[col]), step)
            )  # fmt: skip
    return out


def _decl_age_by_sex(t, cube, params, step):
    age, sex = _cols(cube)
    out = []
    for i, r in t.iterrows():
        lo, hi = _age_of(r["age"])
        out.append(
            Entry("age_by_sex_counts", i, "n", f"age_by_sex_counts {r['sex']} {r['age']}",
                  (sex == r["sex"]) & _age_mask(age, lo, hi), "count", _num(r["n"]), step)
        )  # fmt: skip
    return out


def _pain(cube, params):
    return np.asarray(cube.flag_arrays(params)["pain"], bool)


def _decl_condition_prevalence(t, cube, params, step):
    f = cube.flag_arrays(params)
    pain = np.asarray(f["pain"], bool)
    cond, drug = np.asarray(cube.columns["cond_mask"]), np.asarray(cube.columns["drug_mask"])
    out = []
    for i, r in t.iterrows():
        name = str(r.get("codelist") or "")
        if not name or name == "nan":
            m = pain & np.asarray(f["risk_condition"], bool)
        elif name in cube.condition_lists:
            m = pain & ((cond & cube.condition_bits([name])) != 0)
        elif name in cube.drug_lists:
            m = pain & ((drug & cube.drug_bits([name])) != 0)
        else:
            continue
        out.append(Entry("condition_prevalence", i, "numerator",
                         f"condition_prevalence {r['condition']}", m, "count",
                         _num(r["numerator"]), step))  # fmt: skip
        out.append(Entry("condition_prevalence", i, "denominator",
                         "condition_prevalence denominator (pain cohort)", pain, "count",
                         _num(r["denominator"]), step))  # fmt: skip
    return out


def _decl_combinations(t, cube, params, step):
    from analysis.statistics import condition_label

    pain = _pain(cube, params)
    cond = np.asarray(cube.columns["cond_mask"])
    bits = cube.condition_bits(params.risk_conditions)
    out = []
    for i, r in t.iterrows():
        pattern = 0
        for name in params.risk_conditions:
            if bool(r.get(condition_label(name))):
                pattern |= cube.condition_bits([name])
        m = pain & ((cond & bits) == pattern)
        out.append(Entry("condition_combinations", i, "n",
                         f"condition_combinations {r['n_conditions']} condition(s) #{i}", m,
                         "count", _num(r["n"]), step))  # fmt: skip
    return out


def _decl_site_prevalence(t, cube, params, step):
    pain = _pain(cube, params)
    site = np.asarray(cube.columns["site_mask"])
    out = []
    for i, r in t.iterrows():
        if r["site"] not in cube.sites:
            continue
        m = pain & ((site & (1 << cube.sites.index(r["site"]))) != 0)
        out.append(Entry("site_prevalence", i, "numerator", f"site_prevalence {r['site']}", m,
                         "count", _num(r["numerator"]), step))  # fmt: skip
        out.append(Entry("site_prevalence", i, "denominator", "site_prevalence denominator",
                         pain, "count", _num(r["denominator"]), step))  # fmt: skip
    return out


DECLARED = {
    "age_summary": _decl_age_summary,
    "sex": _decl_sex,
    "age_sex_pyramid": _decl_pyramid,
    "age_by_sex_counts": _decl_age_by_sex,
    "condition_prevalence": _decl_condition_prevalence,
    "condition_combinations": _decl_combinations,
    "site_prevalence": _decl_site_prevalence,
}
"""Table -> the function that declares each released number as a function of the cube's
cells (rows -> masks). Tables whose numbers are not counts of the cube's cells (models,
estimates drawn from released counts) are audited through the counts they are drawn from."""


def declared_entries(name, table, cube, params, rule) -> list[Entry]:
    fn = DECLARED.get(name)
    if fn is None:
        return []
    return fn(table, cube, params, rule.round_to if rule else 1)


def quantities(entries: list[Entry], cube) -> list[tuple[str, np.ndarray, str]]:
    """What must stay protected: every withheld count, and the count of each group with a
    released mean and SD at each age where it has patients (no age pinned) unless that
    count is itself released."""
    age, sex = _cols(cube)
    n = np.asarray(cube.columns["n"])
    released = [e.mask for e in entries if e.kind == "count" and e.value is not None]
    out = []
    seen = set()
    for e in entries:
        if e.kind == "count" and e.value is None:
            key = e.mask.tobytes()
            if key not in seen:
                seen.add(key)
                out.append((e.label, e.mask, "count"))
    for e in entries:
        if e.kind != "moments" or e.mean is None:
            continue
        for a in np.unique(age[e.mask]):
            m = e.mask & (age == a)
            if n[m].sum() == 0 or any(np.array_equal(m, r) for r in released):
                continue
            key = m.tobytes()
            if key not in seen:
                seen.add(key)
                out.append(
                    (f"the patients aged {a} among {e.label.split('(')[-1].rstrip(')')}", m, "age")
                )
    return out


# ----------------------------------------------------------------------------- a run's audit
FIGURE_GROUPS = {
    # figure id (or id of a percentage whose numerator is the group) -> flags (all true)
    "population.n": (),
    "population.female_pct": ("F",),
    "population.elderly_pct": ("elderly",),
    "pain.n": ("pain",),
    "pain.male_pct": ("pain", "M"),
    "pain.recurrent_pct": ("pain", "recurrent"),
    "pain.elderly_pct": ("pain", "elderly"),
    "pain_risk.n": ("pain_risk",),
    "pain_risk_drug.pct_of_pain": ("pain", "risk_drug"),
    "target.n": ("target",),
}
MOMENT_GROUPS = {"population": (), "pain": ("pain",)}


def _group_mask(cube, params, flags) -> np.ndarray:
    f = cube.flag_arrays(params)
    sex = np.asarray(cube.columns["sex"]).astype(str)
    m = np.ones(len(sex), bool)
    for name in flags:
        m &= (sex == name) if name in ("F", "M") else np.asarray(f[name], bool)
    return m


class RunAuditor:
    """What one run has released so far, and the audit of each table it releases next."""

    def __init__(self, study, rule):
        self.cube, self.params, self.rule = study.cube, study.params, rule
        self.released: list[Entry] = self._figure_entries(study)
        self.withheld_by_audit: list[dict] = []
        self.method = ""

    def _figure_entries(self, study) -> list[Entry]:
        """The study's figures (results.csv of every run) as entries: released with it."""
        if not self.cube.detail:
            return []
        figs = {f["id"]: f for f in study.figures()}
        step = self.rule.round_to
        out = []
        for fid, flags in FIGURE_GROUPS.items():
            f = figs.get(fid)
            if f is None:
                continue
            v = f.get("numerator") if fid.endswith("_pct") else f.get("value")
            mask = _group_mask(self.cube, self.params, flags)
            out.append(
                Entry("results", fid, "value", f"results {fid}", mask, "count", _num(v), step)
            )
        for g, flags in MOMENT_GROUPS.items():
            m = figs.get(f"{g}.age_mean")
            if m is None:
                continue
            sd = figs.get(f"{g}.age_sd", {}).get("value")
            out.append(Entry("results", f"{g}.age", "mean", f"results {g} mean and SD of age",
                             _group_mask(self.cube, self.params, flags), "moments",
                             _num(figs.get(f"{g}.n", {}).get("value")), step,
                             mean=_num(m.get("value")), sd=_num(sd)))  # fmt: skip
        return out

    def release(self, df, name: str, protect_with):
        """Protect ``df`` as ``name`` (``protect_with(force)`` -> Protected), audit it with
        everything released before, withhold more where the audit finds a quantity
        unprotected, and return the final Protected."""
        force: dict[str, set] = {}
        for _ in range(MAX_ROUNDS):
            protected = protect_with(force)
            entries = declared_entries(name, protected.table, self.cube, self.params, self.rule)
            if not entries:
                return protected
            every = self.released + entries
            found, self.method = audit(
                self.cube, every, quantities(every, self.cube), self.rule.threshold
            )
            if not found:
                self.released = every
                return protected
            choice = self._least_loss(entries, found[0])
            if choice is None:
                from analysis.errors import AnalysisError

                raise AnalysisError(
                    f"Table {name}: the disclosure audit finds {found[0].words()}, and no "
                    "number of this table can be withheld to prevent it. Nothing was written."
                )
            cols = ("mean", "sd") if choice.kind == "moments" else (choice.column,)
            for c in cols:
                force.setdefault(c, set()).add(choice.row)
            self.withheld_by_audit.append(
                {"table": name, "number": choice.label, "why": found[0].words(),
                 "method": self.method}
            )  # fmt: skip
        from analysis.errors import AnalysisError

        raise AnalysisError(
            f"Table {name}: the disclosure audit did not settle in {MAX_ROUNDS} rounds."
        )

    @staticmethod
    def _least_loss(entries, finding):
        """The released number of this table that loses least: among those the finding
        involves, the smallest group (a mean and SD before the count they describe)."""
        pool = [
            e
            for e in entries
            if e.label in finding.blamed
            and (e.value is not None or e.mean is not None)
            and not (e.kind == "moments" and e.mean is None)
        ]
        if not pool:
            return None
        return min(pool, key=lambda e: (e.value if e.value is not None else math.inf,
                                        e.kind != "moments", e.label))  # fmt: skip
