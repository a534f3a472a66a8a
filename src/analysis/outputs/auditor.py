"""The attacker, built in: what all the numbers a run releases tell together.

Every count a run releases counts the patients of one group, a predicate over a patient's
sex, age and profile (pain level, risk-condition groups, risk drugs, pain sites); every
mean and SD of age is a function of the sums of age and age² over a group. An attacker who
reads all of a run's files therefore has a linear problem (the formulation of tau-ARGUS and
R's sdcTable):

* unknowns: the patients in each *atom*, a combination of sex, age and profile that the
  released predicates can tell apart (every possible combination, occupied or not: the
  attacker does not know which are), integers >= 0;
* constraints: each released count (an interval where it was rounded), each released mean
  (a linear inequality either side: sum (a - m) x >= 0), each released SD (a linear
  relaxation of sum a² x over the intervals of the mean and the SD);
* for each quantity that was *not* released, its smallest and largest feasible value.

A withheld count is protected when its feasible range holds 0 and a larger value (the
attacker cannot tell none from some) or is at least the threshold wide
(:func:`protected`); so is the difference of two released counts one within the other
(62 patients and 60 women tell 2 men); an age is protected when no patient's age is
pinned: the patients of a group with a released mean at an age whose count is not
released can number 0. HiGHS (:func:`scipy.optimize.milp`) solves the problem as an
integer programme when it has at most ``EXACT_ATOMS`` atoms (small practices, where exact
answers come back), else as its LP relaxation, a lower bound on what an attacker learns,
and the method says which.

Each released table declares what its numbers are functions of (:data:`DECLARED`: a row ->
a group); :meth:`RunAuditor.release` audits a table with everything the run released before
it (its ``results.csv`` figures included) and, where it finds an unprotected quantity,
withholds the released number of the table that loses least (the smallest group), then
audits again, before anything is written.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

EXACT_ATOMS = 3000
"""Largest problem solved as an integer programme (atoms); larger ones as an LP."""
MAX_ATOMS = 60_000
"""Largest attacker space built; beyond it the finest dimensions are merged (said)."""
TIME_LIMIT = 0.2
"""Seconds one integer question may take; then the LP relaxation answers it (said)."""
MAX_ROUNDS = 60
"""Most secondary suppressions one table may need before the audit refuses it."""
DIMENSIONS = ("sex", "age", "level", "cond", "drug", "site")


# ----------------------------------------------------------------------------- groups
@dataclass(frozen=True)
class Group:
    """A group of patients: a union of conjunctions, each a mapping dimension -> test
    (a function of an array of that dimension's values, returning booleans). Dimensions:
    ``sex`` (F/M), ``age`` (completed years), ``level`` (0 no qualifying pain, 1 pain,
    2 recurrent pain), ``cond`` / ``drug`` / ``site`` (bit patterns of the risk-condition
    groups, the risk drugs and the pain sites, in the order of the parameters)."""

    terms: tuple  # of tuples of (dimension, test)

    @staticmethod
    def of(**tests) -> Group:
        return Group((tuple(sorted(tests.items(), key=lambda kv: kv[0])),))

    def __or__(self, other: Group) -> Group:
        return Group(self.terms + other.terms)

    def tests(self):
        for term in self.terms:
            yield from term

    def evaluate(self, atoms: dict) -> np.ndarray:
        n = len(next(iter(atoms.values())))
        out = np.zeros(n, bool)
        for term in self.terms:
            m = np.ones(n, bool)
            for dim, test in term:
                m &= np.asarray(test(atoms[dim]), bool)
            out |= m
        return out


def sex_is(s):
    return lambda v, s=s: v == s


def age_in(lo, hi=None):
    return (
        (lambda v, lo=lo: v >= lo)
        if hi is None
        else (lambda v, lo=lo, hi=hi: (v >= lo) & (v <= hi))
    )


def level_at_least(k):
    return lambda v, k=k: v >= k


def bits_any(mask):
    return lambda v, mask=mask: (v & mask) != 0


def bits_equal(pattern, mask):
    return lambda v, pattern=pattern, mask=mask: (v & mask) == pattern


@dataclass
class Entry:
    """One number of a released table, declared as a function of a group: ``count``
    (``value`` patients) or ``moments`` (mean and SD of age, ``value`` = n). ``value`` /
    ``mean`` None where withheld."""

    table: str
    row: object
    column: str
    label: str
    group: Group
    kind: str = "count"
    value: float | None = None
    step: int = 1
    mean: float | None = None
    sd: float | None = None
    decimals: int = 1

    @property
    def released(self) -> bool:
        return (self.value is not None) if self.kind == "count" else (self.mean is not None)


@dataclass
class Finding:
    quantity: str
    low: float
    high: float
    blamed: list = field(default_factory=list)
    what: tuple = ()  # (the quantity's atoms, its kind), for choosing what to withhold

    def words(self) -> str:
        shown = "; ".join(self.blamed[:3]) + ("; ..." if len(self.blamed) > 3 else "")
        rng = _n(self.low) if self.low == self.high else f"{_n(self.low)} to {_n(self.high)}"
        return f"with {shown} released, {self.quantity} would follow as {rng}"


def _n(v) -> str:
    return "any number" if v == math.inf else f"{int(round(v))}"


# ----------------------------------------------------------------------------- the space
class Space:
    """The attacker's atoms: every combination of the dimensions' classes, where a class
    holds the values no released test tells apart (ages stay single years where a mean of
    age is released)."""

    def __init__(self, schema: dict, groups: list[Group], moments: bool):
        self.schema = schema  # dimension -> array of its possible values
        self.dropped: list[str] = []
        tests = {d: [] for d in DIMENSIONS}
        for g in groups:
            for dim, test in g.tests():
                tests[dim].append(test)
        if tests["site"]:  # no site without pain, some with it: zero is a class of its own
            tests["site"].append(lambda v: v != 0)
        classes = {}
        for dim in DIMENSIONS:
            values = np.asarray(schema[dim])
            if dim == "age" and moments:
                classes[dim] = values
                continue
            if not tests[dim]:
                classes[dim] = values[:1]
                continue
            sig = np.column_stack([np.asarray(t(values), bool) for t in tests[dim]])
            _, first = np.unique(sig, axis=0, return_index=True)
            classes[dim] = values[np.sort(first)]
        self.classes = classes
        self.sig_tests = tests
        size = int(np.prod([len(v) for v in classes.values()]))
        if size > MAX_ATOMS:
            raise _TooLarge(size)
        grids = np.meshgrid(*[np.arange(len(classes[d])) for d in DIMENSIONS], indexing="ij")
        idx = {d: g.ravel() for d, g in zip(DIMENSIONS, grids, strict=True)}
        atoms = {d: np.asarray(classes[d])[idx[d]] for d in DIMENSIONS}
        # the sites are those of qualifying episodes: none without pain, some with it
        ok = (atoms["level"] == 0) == (atoms["site"] == 0) if len(classes["site"]) > 1 else True
        keep = np.asarray(ok, bool) if not isinstance(ok, bool) else np.ones(size, bool)
        self.atoms = {d: v[keep] for d, v in atoms.items()}
        self.size = int(keep.sum())

    def class_of(self, dim: str, values: np.ndarray) -> np.ndarray:
        """The representative value of each value's class (same signature)."""
        reps = np.asarray(self.classes[dim])
        tests = self.sig_tests[dim]
        values = np.asarray(values)
        if dim == "age" and len(reps) == len(self.schema["age"]):
            return values
        if not tests:
            return np.full(len(values), reps[0])
        sig_v = np.column_stack([np.asarray(t(values), bool) for t in tests])
        sig_r = np.column_stack([np.asarray(t(reps), bool) for t in tests])
        out = np.empty(len(values), dtype=reps.dtype)
        for i, row in enumerate(sig_r):
            out[(sig_v == row).all(axis=1)] = reps[i]
        return out

    def truth(self, cells: dict) -> np.ndarray:
        """The true patients per atom, from the cube's cells in the same dimensions."""
        rep = {d: self.class_of(d, cells[d]) for d in DIMENSIONS}
        index = {
            key: i
            for i, key in enumerate(zip(*[self.atoms[d].tolist() for d in DIMENSIONS], strict=True))
        }
        out = np.zeros(self.size, dtype=np.int64)
        for key, n in zip(
            zip(*[rep[d].tolist() for d in DIMENSIONS], strict=True), cells["n"], strict=True
        ):
            out[index[key]] += int(n)
        return out


class _TooLarge(Exception):
    pass


# ----------------------------------------------------------------------------- the problem
def _rows(entries, space, masks):
    age = np.asarray(space.atoms["age"], dtype=float)
    rows = []
    for e, col in zip(entries, masks, strict=True):
        col = col.astype(float)
        if e.kind == "count" and e.value is not None:
            half = e.step / 2
            lo = math.ceil(e.value - half) if e.step > 1 else e.value
            hi = math.ceil(e.value + half) - 1 if e.step > 1 else e.value
            rows.append((col, max(lo, 0), hi))
        elif e.kind == "moments" and e.mean is not None:
            h = 0.5 * 10 ** (-e.decimals)
            m_lo, m_hi = e.mean - h, e.mean + h
            rows.append((col * (age - m_lo), 0.0, math.inf))
            rows.append((col * (age - m_hi), -math.inf, 0.0))
            if e.sd is not None:
                s_lo, s_hi = max(e.sd - h, 0.0), e.sd + h
                big = max(m_lo * m_lo, m_hi * m_hi)
                small = min(m_lo * m_lo, m_hi * m_hi)
                # sum a² x = (N - 1) s² + N m² with N = sum x, s and m in their intervals
                rows.append((col * (age**2 - s_hi**2 - big), -math.inf, -(s_hi**2)))
                rows.append((col * (age**2 - s_lo**2 - small), -(s_lo**2), math.inf))
    return rows


class Problem:
    def __init__(self, space: Space, entries: list[Entry], exact: bool | None = None):
        self.space = space
        self.entries = entries
        self.masks = [e.group.evaluate(space.atoms) for e in entries]
        rows = _rows(entries, space, self.masks)
        self.A = np.array([r[0] for r in rows]) if rows else np.zeros((0, space.size))
        self.lb = np.array([r[1] for r in rows], dtype=float)
        self.ub = np.array([r[2] for r in rows], dtype=float)
        if len(self.A):  # rows scaled to a largest coefficient of 1 (ages² reach 8,100)
            scale = np.abs(self.A).max(axis=1)
            scale[scale == 0] = 1.0
            self.A = self.A / scale[:, None]
            self.lb, self.ub = self.lb / scale, self.ub / scale
        self.exact = space.size <= EXACT_ATOMS if exact is None else exact
        self.timeouts = 0  # integer questions unanswered in TIME_LIMIT (the LP answered)
        self.method = (
            f"integer programming over {space.size} atoms (HiGHS through scipy.optimize.milp)"
            if self.exact
            else f"the LP relaxation over {space.size} atoms (HiGHS; a lower bound on what an "
            "attacker learns)"
        )

    def solve(self, objective: np.ndarray, sense: int = 1):
        """(optimum, solution) of min (sense 1) or max (sense -1) objective . x."""
        from scipy.optimize import Bounds, LinearConstraint, milp

        cons = [LinearConstraint(self.A, self.lb, self.ub)] if len(self.A) else []
        res = milp(
            sense * objective,
            constraints=cons,
            integrality=np.ones(self.space.size) if self.exact else None,
            bounds=Bounds(0, np.inf),
            options={"disp": False, "time_limit": TIME_LIMIT},
        )
        if res.x is None:  # unbounded (nothing released bounds it), or no solution in time
            return (math.inf if sense < 0 else 0.0), None
        # at the time limit the best solution found stands: its value overstates the
        # minimum and understates the maximum, so the audit errs towards withholding
        return float(sense * res.fun), res.x

    def feasible(self, q: np.ndarray, lo: float, hi: float):
        """A solution with ``lo <= q . x <= hi``, or None: a feasibility question, which
        HiGHS answers at the first solution found (much faster than an optimum)."""
        from scipy.optimize import Bounds, LinearConstraint, milp

        A = np.vstack([self.A, q[None, :]]) if len(self.A) else q[None, :]
        res = milp(
            np.zeros(self.space.size),
            constraints=[LinearConstraint(A, np.append(self.lb, lo), np.append(self.ub, hi))],
            integrality=np.ones(self.space.size) if self.exact else None,
            bounds=Bounds(0, np.inf),
            options={"disp": False, "time_limit": TIME_LIMIT},
        )
        if res.status == 1 and res.x is None and self.exact:
            # no answer in time: the LP relaxation answers (a lower bound; counted, said)
            self.timeouts += 1
            res = milp(
                np.zeros(self.space.size),
                constraints=[LinearConstraint(A, np.append(self.lb, lo), np.append(self.ub, hi))],
                bounds=Bounds(0, np.inf),
                options={"disp": False},
            )
        return None if res.x is None else np.round(res.x, 9)

    def blamed(self, mask) -> list[str]:
        """The released numbers whose groups hold patients of ``mask``, the latest first
        (the table being audited, then the tables before it, then the figures)."""
        pairs = list(zip(self.entries, self.masks, strict=True))
        found = [e.label for e, m in reversed(pairs) if e.released and np.any(m & mask)]
        return list(dict.fromkeys(found))


def audit(
    space: Space, entries: list[Entry], truth: np.ndarray, threshold: int, sensitive=(), exact=None
):
    """The unprotected quantities given the released ``entries`` (module docstring), and
    the method used. ``sensitive``: (label, group) of the finest cells the released tables
    cross-classify (exact combinations of risk groups, of pain sites; sex by single year of
    age): those holding 1 to threshold - 1 patients must stay protected too, whichever
    table would show them."""
    p = Problem(space, entries, exact)
    released_counts = [
        m for e, m in zip(entries, p.masks, strict=True) if e.kind == "count" and e.released
    ]
    quantities = []  # (label, mask, kind)
    seen = set()
    # what must stay protected is what is small (fewer patients than the threshold, none
    # included): a count withheld only to protect another (secondary) could have been
    # released, so its range is not a disclosure
    for e, m in zip(entries, p.masks, strict=True):
        small = int(truth[m].sum()) < threshold
        if e.kind == "count" and not e.released and small and m.tobytes() not in seen:
            seen.add(m.tobytes())
            quantities.append((e.label, m, "count"))
    # the difference of two released counts, one within the other, is a group too
    labelled = [
        (e.label, m)
        for e, m in zip(entries, p.masks, strict=True)
        if e.kind == "count" and e.released
    ]
    for (la, a), (lb, b) in itertools.permutations(labelled, 2):
        if np.array_equal(a, b) or np.any(b & ~a):
            continue
        diff = a & ~b
        if 1 <= int(truth[diff].sum()) < threshold and diff.tobytes() not in seen:
            seen.add(diff.tobytes())
            quantities.append((f"{la} but not {lb}", diff, "count"))
    for label, g in sensitive:
        m = g.evaluate(space.atoms)
        if 1 <= int(truth[m].sum()) < threshold and m.tobytes() not in seen:
            seen.add(m.tobytes())
            quantities.append((label, m, "count"))
    age = space.atoms["age"]
    for e, m in zip(entries, p.masks, strict=True):
        if e.kind != "moments" or not e.released:
            continue
        for a in np.unique(age[m & (truth > 0)]):
            q = m & (age == a)
            if int(truth[q].sum()) >= threshold:  # as many as a released count may show
                continue
            if q.tobytes() in seen or any(np.array_equal(q, r) for r in released_counts):
                continue
            seen.add(q.tobytes())
            what = e.label.split(" (", 1)[-1].rstrip(")") if " (" in e.label else e.label
            quantities.append((f"the patients aged {a} among {what}", q, "age"))
    found = []
    if not quantities:
        return found, p.method
    total = np.zeros(space.size)
    for _, q, _ in quantities:
        total += q
    solutions = []  # every solution found is a witness for every quantity
    _, x = p.solve(total, 1)  # few patients in every quantity at once
    if x is not None:
        solutions.append(np.round(x, 9))
    _, x = p.solve(total, -1)  # many at once
    if x is not None:
        solutions.append(np.round(x, 9))
    for label, q, kind in quantities:
        lo, hi = check(p, q, kind, threshold, solutions)
        if lo is not None:
            found.append(Finding(label, lo, hi, p.blamed(q), (q, kind)))
    if p.timeouts:
        return (
            found,
            p.method + f" ({p.timeouts} question(s) answered by the LP after {TIME_LIMIT:g} s)",
        )
    return found, p.method


def check(p: Problem, q: np.ndarray, kind: str, threshold: int, solutions=None):
    """(low, high) of the quantity ``q`` where it is unprotected, else (None, None).
    ``solutions``: feasible solutions known (witnesses); those found here are added.
    Asked as feasibility questions first (is none possible? is some?), the range
    computed only where the answer is no."""
    solutions = [] if solutions is None else solutions
    qf = q.astype(float)
    seen = [float(qf @ x) for x in solutions]
    floor = explained(p, q) if kind == "age" else 0
    if not any(v <= floor for v in seen):
        x = p.feasible(qf, 0, floor)
        if x is not None:
            solutions.append(x)
            seen.append(float(qf @ x))
    none_possible = any(v <= floor for v in seen)
    if kind == "age":
        return (None, None) if none_possible else (floor + 1, floor + 1)
    if none_possible and not any(v >= 1 for v in seen):
        x = p.feasible(qf, 1, np.inf)
        if x is not None:
            solutions.append(x)
            seen.append(float(qf @ x))
    if none_possible and any(v >= 1 for v in seen):
        return None, None  # none and some both possible: protected
    lo, _ = p.solve(qf, 1)
    hi, _ = p.solve(qf, -1)
    lo = math.ceil(lo - 1e-6)
    hi = hi if hi == math.inf else math.floor(hi + 1e-6)
    if protected(lo, hi, threshold):
        return None, None
    return lo, hi


def protected(lo, hi, threshold: int) -> bool:
    """A withheld count is protected when the attacker cannot tell none from some (its
    range holds 0 and more), or its range is at least the threshold wide. (The issue asked
    for a value at or above the threshold in the range; a count the rule withholds as small
    is often bounded below the threshold by counts released before it, in tables already
    written, so this audit asks that no one's presence and no exact count follow.)"""
    return (lo == 0 and hi >= 1) or (hi - lo >= threshold)


def explained(p: Problem, q: np.ndarray) -> float:
    """The patients of ``q`` that released counts lying inside it already show (an age
    whose count is released pins nobody beyond what is released)."""
    best = 0.0
    for e, m in zip(p.entries, p.masks, strict=True):
        if e.kind == "count" and e.released and not np.any(m & ~q):
            best = max(best, math.ceil(e.value - e.step / 2) if e.step > 1 else e.value)
    return best


# ----------------------------------------------------------------------------- declarations
ALL = Group.of()


def _num(v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _age_key(v) -> Group:
    text = str(v)
    if text.endswith("+"):
        return Group.of(age=age_in(int(text[:-1])))
    a = int(float(text))
    return Group.of(age=age_in(a, a))


def _with(g: Group, **tests) -> Group:
    """``g`` and the further tests, in every term."""
    return Group(
        tuple(tuple(sorted({**dict(t), **tests}.items(), key=lambda kv: kv[0])) for t in g.terms)
    )


class Declarations:
    """The groups of one parameter set, in the attacker's dimensions."""

    def __init__(self, cube, params):
        self.cube, self.params = cube, params
        self.cond_lists = tuple(params.risk_conditions)
        self.drug_lists = tuple(params.risk_drugs)
        self.pain = Group.of(level=level_at_least(1))
        self.recurrent = Group.of(level=level_at_least(2))
        self.any_cond = (1 << len(self.cond_lists)) - 1
        self.any_drug = (1 << len(self.drug_lists)) - 1
        self.elderly = age_in(params.elderly_age)

    def cond(self, name) -> int:
        return 1 << self.cond_lists.index(name)

    def drug(self, name) -> int:
        return 1 << self.drug_lists.index(name)

    def pain_risk(self) -> Group:
        return _with(self.pain, cond=bits_any(self.any_cond))

    def target(self) -> Group:
        base = {"level": level_at_least(2), "age": self.elderly}
        return Group.of(**base, cond=bits_any(self.any_cond)) | Group.of(
            **base, drug=bits_any(self.any_drug)
        )

    def cells(self) -> dict:
        """The cube's cells in the attacker's dimensions."""
        c, f = self.cube.columns, self.cube.flag_arrays(self.params)
        level = np.where(
            np.asarray(f["recurrent"], bool) & np.asarray(f["pain"], bool),
            2,
            np.where(np.asarray(f["pain"], bool), 1, 0),
        )
        cond = np.zeros(len(level), dtype=np.int64)
        for i, name in enumerate(self.cond_lists):
            cond |= np.where((c["cond_mask"] & self.cube.condition_bits([name])) != 0, 1 << i, 0)
        drug = np.zeros(len(level), dtype=np.int64)
        for i, name in enumerate(self.drug_lists):
            drug |= np.where((c["drug_mask"] & self.cube.drug_bits([name])) != 0, 1 << i, 0)
        return {
            "sex": np.asarray(c["sex"]).astype(str),
            "age": np.asarray(c["age"], dtype=np.int64),
            "level": level,
            "cond": cond,
            "drug": drug,
            "site": np.asarray(c["site_mask"], dtype=np.int64)
            if self.cube.detail
            else np.zeros(len(level), dtype=np.int64),
            "n": np.asarray(c["n"], dtype=np.int64),
        }

    def schema(self) -> dict:
        top = int(self.cube.top_age or max(90, int(np.max(self.cube.columns["age"]))))
        return {
            "sex": np.array(["F", "M"]),
            "age": np.arange(0, top + 1),
            "level": np.array([0, 1, 2]),
            "cond": np.arange(1 << len(self.cond_lists)),
            "drug": np.arange(1 << len(self.drug_lists)),
            "site": np.arange(1 << len(self.cube.sites)),
        }


def _count(table, row, column, label, group, value, step) -> Entry:
    """A released (or, NaN, withheld) count of ``group``: one number of ``table``."""
    return Entry(table, row, column, label, group, "count", _num(value), step)


def _decl_age_summary(d: Declarations, t, step):
    from analysis.statistics import age_bands

    groups = {"all": ALL, "sex=F": Group.of(sex=sex_is("F")), "sex=M": Group.of(sex=sex_is("M"))}
    for label, lo, hi in age_bands(d.params):
        groups[f"age {label}"] = Group.of(age=age_in(lo, hi))
    out = []
    for i, r in t.iterrows():
        g = groups.get(str(r["group"]))
        if g is None:
            continue
        n = _num(r["n"])
        out.append(
            Entry("age_summary", i, "n", f"age_summary n ({r['group']})", g, "count", n, step)
        )
        out.append(
            Entry(
                "age_summary",
                i,
                "mean",
                f"age_summary mean and SD ({r['group']})",
                g,
                "moments",
                n,
                step,
                mean=_num(r["mean"]),
                sd=_num(r["sd"]),
            )
        )
    return out


def _decl_sex(d, t, step):
    out = []
    for i, r in t.iterrows():
        g = Group.of(sex=sex_is("F" if r["sex"] == "female" else "M"))
        out.append(
            Entry("sex", i, "numerator", f"sex {r['sex']}", g, "count", _num(r["numerator"]), step)
        )
        out.append(_count("sex", i, "denominator", "sex denominator", ALL, r["denominator"], step))
    return out


def _decl_pyramid(d, t, step):
    out = []
    for i, r in t.iterrows():
        text = str(r["group_lo"])
        age = (
            age_in(int(text[:-1]))
            if text.endswith("+")
            else age_in(int(float(text)), int(float(text)) + 4)
        )
        for col, s in (("female", "F"), ("male", "M")):
            out.append(
                _count(
                    "age_sex_pyramid",
                    i,
                    col,
                    f"age_sex_pyramid {col} {r['age_group']}",
                    Group.of(sex=sex_is(s), age=age),
                    r[col],
                    step,
                )
            )
    return out


def _decl_age_by_sex(d, t, step):
    out = []
    for i, r in t.iterrows():
        g = _with(_age_key(r["age"]), sex=sex_is(str(r["sex"])))
        out.append(
            _count(
                "age_by_sex_counts",
                i,
                "n",
                f"age_by_sex_counts {r['sex']} {r['age']}",
                g,
                r["n"],
                step,
            )
        )
    return out


def _decl_condition_prevalence(d, t, step):
    out = []
    for i, r in t.iterrows():
        name = str(r.get("codelist") or "")
        if name in ("", "nan"):
            g = d.pain_risk()
        elif name in d.cond_lists:
            g = _with(d.pain, cond=bits_any(d.cond(name)))
        elif name in d.drug_lists:
            g = _with(d.pain, drug=bits_any(d.drug(name)))
        else:
            continue
        out.append(
            _count(
                "condition_prevalence",
                i,
                "numerator",
                f"condition_prevalence {r['condition']}",
                g,
                r["numerator"],
                step,
            )
        )
        out.append(
            _count(
                "condition_prevalence",
                i,
                "denominator",
                "the pain cohort (condition_prevalence)",
                d.pain,
                r["denominator"],
                step,
            )
        )
    return out


def _decl_combinations(d, t, step):
    from analysis.statistics import condition_label

    out = []
    for i, r in t.iterrows():
        pattern = 0
        for name in d.cond_lists:
            if bool(r.get(condition_label(name))):
                pattern |= d.cond(name)
        yes = [condition_label(n) for n in d.cond_lists if pattern & d.cond(n)] or ["none"]
        out.append(
            _count(
                "condition_combinations",
                i,
                "n",
                f"condition_combinations ({' + '.join(yes)})",
                _with(d.pain, cond=bits_equal(pattern, d.any_cond)),
                r["n"],
                step,
            )
        )
    return out


def _decl_site_prevalence(d, t, step):
    out = []
    for i, r in t.iterrows():
        if r["site"] not in d.cube.sites:
            continue
        g = _with(d.pain, site=bits_any(1 << d.cube.sites.index(r["site"])))
        out.append(
            _count(
                "site_prevalence",
                i,
                "numerator",
                f"site_prevalence {r['site']}",
                g,
                r["numerator"],
                step,
            )
        )
        out.append(
            _count(
                "site_prevalence",
                i,
                "denominator",
                "the pain cohort (site_prevalence)",
                d.pain,
                r["denominator"],
                step,
            )
        )
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
"""Table -> the function that declares each of its numbers as a function of a group."""


def _figure_entries(d: Declarations, figures: list[dict], step: int) -> list[Entry]:
    """A run's ``results.csv`` figures as entries (released by every run)."""
    figs = {f["id"]: f for f in figures}
    elderly = Group.of(age=d.elderly)
    groups = {
        "population.n": ALL,
        "population.female_pct": Group.of(sex=sex_is("F")),
        "population.elderly_pct": elderly,
        "pain.n": d.pain,
        "pain.male_pct": _with(d.pain, sex=sex_is("M")),
        "pain.recurrent_pct": d.recurrent,
        "pain.elderly_pct": _with(d.pain, age=d.elderly),
        "pain_risk.n": d.pain_risk(),
        "pain_risk_drug.pct_of_pain": _with(d.pain, drug=bits_any(d.any_drug)),
        "target.n": d.target(),
    }
    out = []
    for fid, g in groups.items():
        f = figs.get(fid)
        if f is None:
            continue
        v = f.get("numerator") if fid.endswith("_pct") else f.get("value")
        out.append(Entry("results", fid, "value", f"results {fid}", g, "count", _num(v), step))
    for name, g in (("population", ALL), ("pain", d.pain)):
        m = figs.get(f"{name}.age_mean")
        if m is not None:
            out.append(
                Entry(
                    "results",
                    f"{name}.age",
                    "mean",
                    f"results mean and SD of age ({name})",
                    g,
                    "moments",
                    _num(figs.get(f"{name}.n", {}).get("value")),
                    step,
                    mean=_num(m.get("value")),
                    sd=_num(figs.get(f"{name}.age_sd", {}).get("value")),
                )
            )
    return out


# ----------------------------------------------------------------------------- a run's audit
class RunAuditor:
    """What one run has released so far, and the audit of each table it releases next."""

    def __init__(self, study, rule):
        self.rule = rule
        self.d = Declarations(study.cube, study.params)
        self.cells = self.d.cells()
        self.released: list[Entry] = _figure_entries(self.d, study.figures(), rule.round_to)
        self.withheld_by_audit: list[dict] = []
        self.unresolved: list[dict] = []  # what follows from numbers released before a table
        self.known: set = set()
        self.method = ""
        self.sensitive: list = []
        self._pending: list = []
        self._dims: set = set()

    def _stages(self, entries, sensitive, dims):
        """The attacker's spaces, in order: (1) the numbers about the dimensions of the table
        being audited (and sex and age), exactly, as an integer programme; (2) every number
        the run released, as the LP relaxation (a lower bound on the attacker), the means
        of age left out where single years would make the space too large."""
        dims = set(dims or ()) | {"sex", "age"}

        def within(g):
            return {dim for dim, _ in g.tests()} <= dims

        def build(es, ss, single_ages=True):
            moments = single_ages and any(x.kind == "moments" and x.released for x in es)
            groups = [x.group for x in es] + [g for _, g in ss]
            try:
                return Space(self.d.schema(), groups, moments), es, ss, ""
            except _TooLarge:
                es = [x for x in es if x.kind != "moments"]
                groups = [x.group for x in es] + [g for _, g in ss]
                return Space(self.d.schema(), groups, False), es, ss, ", means of age left out"

        es = [x for x in entries if within(x.group)]
        ss = [(label, g) for label, g in sensitive if within(g)]
        try:
            yield (*build(es, ss), None, f"the numbers about {', '.join(sorted(dims))}")
        except _TooLarge:
            yield (
                *build(es, ss, single_ages=False),
                None,
                f"the numbers about {', '.join(sorted(dims - {'age'}))}",
            )
        if len(es) < len(entries) or len(ss) < len(sensitive):
            try:
                yield (*build(entries, sensitive), False, "every number of the run")
            except _TooLarge:  # too many combinations: those of the table's dimensions
                dims |= {"level"}
                es = [x for x in entries if within(x.group)]
                ss = [(label, g) for label, g in sensitive if within(g)]
                yield (
                    *build(es, ss),
                    False,
                    f"every number of the run about {', '.join(sorted(dims))}",
                )

    def _audit(self, entries, sensitive, dims=None):
        methods = []
        for space, es, ss, note, exact, what in self._stages(entries, sensitive, dims):
            found, method = audit(
                space, es, space.truth(self.cells), self.rule.threshold, ss, exact
            )
            methods.append(f"{what}: {method}{note}")
            if found:
                return found, "; ".join(methods)
        return [], "; ".join(methods)

    def _least_loss(self, entries, finding):
        """The released number of this table that loses least and protects what the
        finding names: the smallest group whose withholding does (a mean and SD before
        the count they describe)."""
        import dataclasses

        q, kind = finding.what
        pool = sorted(
            (e for e in entries if e.released),
            key=lambda e: (e.value if e.value is not None else math.inf, e.kind != "moments"),
        )
        for e in pool:
            trial = [
                dataclasses.replace(x, value=None, mean=None) if x is e else x
                for x in self.released + entries
            ]
            for space, es, _ss, _note, exact, _what in self._stages(
                trial, self._pending, self._dims
            ):
                # the same quantity in this space: the atoms of the finding's group
                mask = _same_atoms(finding, space, self)
                if mask is None:
                    continue
                if check(Problem(space, es, exact), mask, kind, self.rule.threshold)[0] is None:
                    return e
        # no one number does it alone: the smallest goes first and the audit runs again
        # (withholding all of this table returns to what was released before, which passed)
        return pool[0] if pool else None

    def release(self, df, name: str, protect_with):
        """Protect ``df`` as ``name`` (``protect_with(force)`` -> Protected), audit it with
        everything released before, withhold more where the audit finds a quantity
        unprotected, and return the final Protected."""
        from analysis.errors import AnalysisError

        force: dict[str, set] = {}
        for _ in range(MAX_ROUNDS):
            protected = protect_with(force)
            fn = DECLARED.get(name)
            entries = fn(self.d, _with_left_out(protected), self.rule.round_to) if fn else []
            if not entries:
                return protected
            sensitive = self.sensitive + SENSITIVE.get(name, lambda d: [])(self.d)
            self._dims = {dim for x in entries for dim, _ in x.group.tests()}
            found, self.method = self._audit(self.released + entries, sensitive, self._dims)
            found = [f for f in found if f.quantity not in self.known]
            if not found:
                self.released = self.released + entries
                self.sensitive = sensitive
                return protected
            self._pending = sensitive
            choice = self._least_loss(entries, found[0])
            if choice is None:
                # every number of this table is withheld and it still follows: from what
                # was released before (the figures every run writes): said, not this
                # table's to prevent
                self.known.add(found[0].quantity)
                self.unresolved.append({"table": name, "what": found[0].words()})
                continue
            for c in ("mean", "sd") if choice.kind == "moments" else (choice.column,):
                force.setdefault(c, set()).add(choice.row)
            self.withheld_by_audit.append(
                {"table": name, "withheld": choice.label, "why": found[0].words()}
            )
        raise AnalysisError(
            f"Table {name}: the disclosure audit did not settle in {MAX_ROUNDS} rounds."
        )


def _same_atoms(finding, space, auditor):
    """The finding's quantity in ``space``: its atoms were built from the same groups, so
    the space is the same one (withholding a number keeps its group in the problem)."""
    q, _ = finding.what
    return q if len(q) == space.size else None


def _with_left_out(protected):
    """The released table with the rows it leaves out (their counts withheld): the
    attacker does not see them, but they are what must stay protected."""
    import pandas as pd

    left = protected.dropped
    if left is None or not len(left):
        return protected.table
    left = left.copy()

    counts = [c for c in left.columns if c in ("n", "female", "male", "numerator")]
    for c in counts:
        left[c] = float("nan")
    return pd.concat([protected.table, left])


def _patterns(d, among, dim, n_bits, label_of):
    return [
        (
            f"{label_of(p)} ({'pain cohort' if among is d.pain else 'all'})",
            _with(among, **{dim: bits_equal(p, (1 << n_bits) - 1)}),
        )
        for p in range(1 << n_bits)
    ]


def _sensitive_conditions(d):
    from analysis.statistics import condition_label

    def label(p):
        yes = [condition_label(n) for i, n in enumerate(d.cond_lists) if p & (1 << i)]
        return "the patients with exactly " + (" + ".join(yes) or "no risk condition")

    return _patterns(d, d.pain, "cond", len(d.cond_lists), label)


def _sensitive_sites(d):
    def label(p):
        yes = [s for i, s in enumerate(d.cube.sites) if p & (1 << i)]
        return "the patients with pain at exactly " + (" + ".join(yes) or "no site")

    return _patterns(d, d.pain, "site", len(d.cube.sites), label)[1:]


SENSITIVE = {
    "condition_prevalence": _sensitive_conditions,
    "condition_combinations": _sensitive_conditions,
    "site_prevalence": _sensitive_sites,
}
"""Table -> the finest cells it cross-classifies (a prevalence table of risk groups
cross-classifies their exact combinations, which a combinations table shows)."""
