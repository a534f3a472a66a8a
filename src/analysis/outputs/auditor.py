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

Across runs: what every run released is in a ledger of the reports folder
(:mod:`analysis.outputs.ledger`); a run's figures and tables are audited with the numbers of
the runs before it on the same data and definitions too (the third space of
:meth:`RunAuditor._stages`), and a group of the figures that would reveal a small group is
withheld in the whole run (``Study.withheld_groups``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from analysis.errors import AnalysisError
from analysis.outputs.disclosure import TOP_AGE_FLOOR
from analysis.outputs.registry import spec_for
from analysis.sensitivity import _cell_params, with_base
from analysis.statistics import age_bands, condition_label

EXACT_ATOMS = 3000
"""Largest problem solved as an integer programme (atoms); larger ones as an LP."""
MAX_ATOMS = 60_000
"""Largest attacker space built; beyond it the finest dimensions are merged (said)."""
TIME_LIMIT = 0.2
"""Seconds one integer question may take; then the LP relaxation answers it (said)."""
MAX_ROUNDS = 60
"""Most secondary suppressions one table may need before the audit refuses it."""
MAX_TRIES = 40
"""Numbers tried, smallest first, for the one whose withholding protects a finding."""


# ----------------------------------------------------------------------------- groups
@dataclass(frozen=True)
class Group:
    """A group of patients: a union of conjunctions, each a mapping dimension -> test
    (:class:`Test`). Dimensions: ``sex`` (F/M), ``age`` (completed years), ``q<s>`` (the
    patient's pain episodes of severity s or more in the window, capped: :func:`episodes`),
    ``cond`` / ``drug`` / ``site`` (bit patterns of the risk-condition groups, the risk
    drugs and the pain sites, in the order of :class:`Declarations`)."""

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


@dataclass(frozen=True)
class Test:
    """A test of one dimension's values: ``is`` (equal to), ``between`` (lo to hi, both
    included; hi None: lo and over), ``any`` (a bit of the mask set), ``equal`` (the bits
    of the mask exactly the pattern). Plain data, so a ledger of what earlier runs released
    can hold it (:mod:`analysis.outputs.ledger`)."""

    op: str
    args: tuple

    def __call__(self, v):
        v = np.asarray(v)
        a = self.args
        if self.op == "is":
            return v == a[0]
        if self.op == "between":
            return (v >= a[0]) if a[1] is None else ((v >= a[0]) & (v <= a[1]))
        if self.op == "any":
            return (v & a[0]) != 0
        if self.op == "equal":
            return (v & a[1]) == a[0]
        raise ValueError(f"unknown test {self.op!r}")


def sex_is(s):
    return Test("is", (s,))


def age_in(lo, hi=None):
    return Test("between", (int(lo), None if hi is None else int(hi)))


def at_least(k):
    return Test("between", (int(k), None))


def bits_any(mask):
    return Test("any", (int(mask),))


def bits_equal(pattern, mask):
    return Test("equal", (int(pattern), int(mask)))


def episodes(severity: int) -> str:
    """The dimension of the number of pain episodes of at least ``severity`` (capped at
    the largest recurrence threshold asked about): pain under a definition is q >= 1,
    recurrent pain q >= min_episodes."""
    return f"q{int(severity)}"


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
    earlier: bool = False  # released by an earlier run (the ledger)

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
    stage: str = ""  # the attacker's space it was found in (RunAuditor._stages)

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
    age is released). ``schema``: dimension -> its possible values, in the order of
    :meth:`Declarations.schema` (sex, age, the episode counts by severity, cond, drug,
    site); ``site_episodes``: the episode dimension whose pain the sites are of."""

    def __init__(self, schema: dict, groups: list[Group], moments: bool, site_episodes=None):
        self.schema = schema
        self.dims = tuple(schema)
        self.dropped: list[str] = []
        tests = {d: [] for d in self.dims}
        for g in groups:
            for dim, test in g.tests():
                tests[dim].append(test)
        if tests["site"] and site_episodes:
            # no site without pain, some with it: zero is a class of its own, both sides
            tests["site"].append(Test("any", (-1,)))
            tests[site_episodes].append(at_least(1))
        classes, spans = {}, {}
        for dim in self.dims:
            values = np.asarray(schema[dim])
            if dim == "age" and moments:
                classes[dim] = values
                continue
            if not tests[dim]:
                classes[dim] = values[:1]
                if dim.startswith("q"):
                    spans[dim] = [(values.min(), values.max())]
                continue
            sig = np.column_stack([np.asarray(t(values), bool) for t in tests[dim]])
            _, first, inverse = np.unique(sig, axis=0, return_index=True, return_inverse=True)
            order = np.argsort(first)
            classes[dim] = values[first[order]]
            inverse = np.asarray(inverse).ravel()
            if dim.startswith("q"):
                spans[dim] = [
                    (values[inverse == k].min(), values[inverse == k].max()) for k in order
                ]
        self.classes = classes
        self.sig_tests = tests
        size = int(np.prod([len(v) for v in classes.values()]))
        if size > MAX_ATOMS:
            raise _TooLarge(size)
        grids = np.meshgrid(*[np.arange(len(classes[d])) for d in self.dims], indexing="ij")
        idx = {d: g.ravel() for d, g in zip(self.dims, grids, strict=True)}
        atoms = {d: np.asarray(classes[d])[idx[d]] for d in self.dims}
        keep = np.ones(size, bool)
        # more episodes of at least a lower severity than of a higher one: a chain, checked
        # on the classes' spans (the highest severity's smallest value carried down)
        qs = sorted((d for d in self.dims if d.startswith("q")), key=lambda d: -int(d[1:]))
        if len(qs) > 1:
            carried = np.full(size, -np.inf)
            for d in qs:
                lo = np.array([spans[d][k][0] for k in idx[d]], float)
                hi = np.array([spans[d][k][1] for k in idx[d]], float)
                carried = np.maximum(lo, carried)
                keep &= carried <= hi
        if site_episodes and len(classes["site"]) > 1:
            keep &= (atoms[site_episodes] == 0) == (atoms["site"] == 0)
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
        rep = {d: self.class_of(d, cells[d]) for d in self.dims}
        index = {
            key: i
            for i, key in enumerate(zip(*[self.atoms[d].tolist() for d in self.dims], strict=True))
        }
        out = np.zeros(self.size, dtype=np.int64)
        for key, n in zip(
            zip(*[rep[d].tolist() for d in self.dims], strict=True), cells["n"], strict=True
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
        # each constraint once (a grid repeats its population in every cell; every run
        # releases the same figures): the rows of the first entry of each
        rows, self.row_entry, seen = [], [], set()
        for i, (e, m) in enumerate(zip(entries, self.masks, strict=True)):
            key = (m.tobytes(), e.kind, e.value, e.step, e.mean, e.sd, e.decimals)
            if key in seen:
                continue
            seen.add(key)
            mine = _rows([e], space, [m])
            rows += mine
            self.row_entry += [i] * len(mine)
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

    def solve(self, objective: np.ndarray, sense: int = 1, relax: bool = False):
        """(optimum, solution) of min (sense 1) or max (sense -1) objective . x (``relax``:
        of the LP relaxation). An integer programme not solved in ``TIME_LIMIT`` is
        answered by its LP relaxation (its optimum bounds the integer one: the range it
        gives holds the attacker's)."""
        from scipy.optimize import Bounds, LinearConstraint, milp

        cons = [LinearConstraint(self.A, self.lb, self.ub)] if len(self.A) else []
        res = milp(
            sense * objective,
            constraints=cons,
            integrality=np.ones(self.space.size) if self.exact and not relax else None,
            bounds=Bounds(0, np.inf),
            options={"disp": False, "time_limit": TIME_LIMIT},
        )
        if res.status == 1:  # the time limit: the LP answers, without one (said)
            self.timeouts += 1
            res = milp(
                sense * objective, constraints=cons, bounds=Bounds(0, np.inf),
                options={"disp": False},
            )  # fmt: skip
        if res.x is None:  # unbounded: nothing released bounds it
            return (math.inf if sense < 0 else 0.0), None
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
        if res.status == 1 and res.x is None:
            # no answer in time: the LP relaxation answers (a lower bound; counted, said)
            self.timeouts += 1
            res = milp(
                np.zeros(self.space.size),
                constraints=[LinearConstraint(A, np.append(self.lb, lo), np.append(self.ub, hi))],
                bounds=Bounds(0, np.inf),
                options={"disp": False},
            )
        return None if res.x is None else np.round(res.x, 9)

    def check_truth(self, truth: np.ndarray) -> None:
        """The data must satisfy every released number's constraint; a number that does
        not was declared wrong (or a ledger was altered): the audit stops, naming it."""
        if not len(self.A):
            return
        x = truth.astype(float)
        ax = self.A @ x
        bad = (ax < self.lb - 1e-6) | (ax > self.ub + 1e-6)
        if not bad.any():
            return

        e = self.entries[self.row_entry[int(np.nonzero(bad)[0][0])]]
        raise AnalysisError(
            f"The disclosure audit: the released number '{e.label}' does not match "
            "the data it is declared a function of (a wrong declaration, or an "
            "altered disclosure ledger); nothing more is released."
        )

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
    p.check_truth(truth)
    quantities = _quantities(p, truth, threshold, sensitive)
    found = []
    if not quantities:
        return found, p.method
    total = np.zeros(space.size)
    for _, q, _ in quantities:
        total += q
    # every solution found is a witness for every quantity; the data themselves are one
    # (they satisfy every released number: check_truth), and show that some is possible
    solutions = [truth.astype(float)]
    for sense in (1, -1):  # few patients in every quantity at once, then many
        for relax in (True, False):  # a vertex of the LP is often whole already
            _, x = p.solve(total, sense, relax=relax)
            if x is not None and (relax is False or np.allclose(x, np.round(x), atol=1e-6)):
                solutions.append(np.round(x, 9))
                break
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


def _quantities(p: Problem, truth: np.ndarray, threshold: int, sensitive) -> list:
    """What must stay protected, as (label, atoms, kind): the small withheld counts, the
    small differences of two counts one within the other, the small finest cells
    (``sensitive``), and the ages of patients in a group with a released mean; each once.
    Those of earlier runs' numbers only where this run says something new about them."""
    space, entries = p.space, p.entries
    released_counts = [
        m for e, m in zip(entries, p.masks, strict=True) if e.kind == "count" and e.released
    ]
    # the quantities of this run's numbers are checked; those of earlier runs' (the ledger)
    # where this run says something new about their patients: a number no earlier run
    # released (a count of other patients, or another value), whose group meets theirs
    known = {
        (m.tobytes(), e.kind, e.value, e.mean, e.sd)
        for e, m in zip(entries, p.masks, strict=True)
        if e.earlier and e.released
    }
    new = [
        (e, m)
        for e, m in zip(entries, p.masks, strict=True)
        if not e.earlier
        and e.released
        and (m.tobytes(), e.kind, e.value, e.mean, e.sd) not in known
    ]
    touched = np.zeros(space.size, bool)
    touched_ages = np.zeros(space.size, bool)
    for e, m in new:
        touched |= m
        if any(dim == "age" for dim, _ in e.group.tests()) or e.kind == "moments":
            touched_ages |= m

    def checked(e, m, ages=False):
        return not e.earlier or bool(np.any(m & (touched_ages if ages else touched)))

    quantities = []  # (label, mask, kind)
    seen = set()
    # what must stay protected is what is small (fewer patients than the threshold, none
    # included): a count withheld only to protect another (secondary) could have been
    # released, so its range is not a disclosure
    for e, m in zip(entries, p.masks, strict=True):
        small = int(truth[m].sum()) < threshold
        if e.kind == "count" and not e.released and small and m.tobytes() not in seen:
            if not checked(e, m):
                continue
            seen.add(m.tobytes())
            quantities.append((e.label, m, "count"))
    # the difference of two released counts, one within the other, is a group too
    # ... and so is a released count less a group within it that was withheld (62 patients
    # released and 60 women withheld still tell that 2 are men). Each group once (a count
    # released by several runs or rows is one group; it is this run's where any copy is);
    # containment and sizes for every pair at once.
    groups: dict = {}
    for e, m in zip(entries, p.masks, strict=True):
        if e.kind == "count":
            label, _, earlier, rel = groups.get(m.tobytes(), (e.label, m, True, False))
            groups[m.tobytes()] = (label, m, earlier and e.earlier, rel or e.released)
    labelled = list(groups.values())
    if len(labelled) > 1:
        M = np.array([m for _, m, _, _ in labelled], dtype=np.float32)
        outside = M @ (1.0 - M).T  # [i, j]: atoms of i outside j
        sizes = np.array([int(truth[m].sum()) for _, m, _, _ in labelled])
        diff = sizes[:, None] - sizes[None, :]  # [a, b]: a's patients less b's
        fresh = np.array([not earlier for _, _, earlier, _ in labelled])
        rel = np.array([r for _, _, _, r in labelled])
        pairs = (
            rel[:, None]  # a released
            & (outside.T < 0.5)  # b within a
            & (outside > 0.5)  # a not within b (not the same group)
            & (diff >= 1)
            & (diff < threshold)
            & (fresh[:, None] | fresh[None, :])
        )
        for ia, ib in zip(*np.nonzero(pairs), strict=True):
            (la, a, _, _), (lb, b, _, _) = labelled[ia], labelled[ib]
            d = a & ~b
            if d.tobytes() not in seen:
                seen.add(d.tobytes())
                quantities.append((f"{la} but not {lb}", d, "count"))
    for label, g in sensitive:
        m = g.evaluate(space.atoms)
        if 1 <= int(truth[m].sum()) < threshold and m.tobytes() not in seen:
            seen.add(m.tobytes())
            quantities.append((label, m, "count"))
    age = space.atoms["age"]
    for e, m in zip(entries, p.masks, strict=True):
        if e.kind != "moments" or not e.released or not checked(e, m, ages=True):
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
    return quantities


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
    # the LP's range holds the integer one: where it is already narrower than the threshold,
    # so is the attacker's (no integer programme needed); else the exact range decides
    for relax in (True, False) if p.exact else (False,):
        lo, _ = p.solve(qf, 1, relax=relax)
        hi, _ = p.solve(qf, -1, relax=relax)
        lo = math.ceil(lo - 1e-6)
        hi = hi if hi == math.inf else math.floor(hi + 1e-6)
        if not protected(lo, hi, threshold):
            return lo, hi
    return None, None


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
    """The groups of one parameter set, in the attacker's dimensions. ``cond_lists`` /
    ``drug_lists``: the code lists the bits stand for (the parameter set's first, then
    those of earlier runs' releases); the cube must hold them, and the severities and
    episode counts the groups ask about (:meth:`covers`)."""

    def __init__(self, cube, params, cond_lists=(), drug_lists=()):
        self.cube, self.params = cube, params
        self.cond_lists = tuple(dict.fromkeys((*params.risk_conditions, *cond_lists)))
        self.drug_lists = tuple(dict.fromkeys((*params.risk_drugs, *drug_lists)))
        self.q = episodes(params.min_severity)
        self.pain = Group.of(**{self.q: at_least(1)})
        self.recurrent = Group.of(**{self.q: at_least(max(1, params.min_episodes))})
        self.any_cond = self.cond_mask(params.risk_conditions)
        self.any_drug = self.drug_mask(params.risk_drugs)
        self.elderly = age_in(params.elderly_age)
        self.grid = None  # the sensitivity grid the run releases (its cells' parameters)

    def cond(self, name) -> int:
        return 1 << self.cond_lists.index(name)

    def drug(self, name) -> int:
        return 1 << self.drug_lists.index(name)

    def cond_mask(self, names) -> int:
        return sum(self.cond(n) for n in names)

    def drug_mask(self, names) -> int:
        return sum(self.drug(n) for n in names)

    def pain_risk(self) -> Group:
        return _with(self.pain, cond=bits_any(self.any_cond))

    def target(self, params=None) -> Group:
        """The target subgroup of ``params`` (default: the run's): recurrent pain, elderly,
        with a risk condition or a risk drug."""
        p = params or self.params
        base = {
            episodes(p.min_severity): at_least(max(1, p.min_episodes)),
            "age": age_in(p.elderly_age),
        }
        return Group.of(**base, cond=bits_any(self.cond_mask(p.risk_conditions))) | Group.of(
            **base, drug=bits_any(self.drug_mask(p.risk_drugs))
        )

    def pain_of(self, params) -> Group:
        return Group.of(**{episodes(params.min_severity): at_least(1)})

    def severities(self) -> tuple:
        return tuple(sorted(self.cube.severities))

    def cells(self) -> dict:
        """The cube's cells in the attacker's dimensions."""
        c = self.cube.columns
        n_cells = len(c["n"])
        cond = np.zeros(n_cells, dtype=np.int64)
        for i, name in enumerate(self.cond_lists):
            cond |= np.where((c["cond_mask"] & self.cube.condition_bits([name])) != 0, 1 << i, 0)
        drug = np.zeros(n_cells, dtype=np.int64)
        for i, name in enumerate(self.drug_lists):
            drug |= np.where((c["drug_mask"] & self.cube.drug_bits([name])) != 0, 1 << i, 0)
        out = {
            "sex": np.asarray(c["sex"]).astype(str),
            "age": np.asarray(c["age"], dtype=np.int64),
        }
        for s in self.severities():
            out[episodes(s)] = np.asarray(c[f"q{s}"], dtype=np.int64)
        out.update(
            {
                "cond": cond,
                "drug": drug,
                "site": np.asarray(c["site_mask"], dtype=np.int64)
                if self.cube.detail
                else np.zeros(n_cells, dtype=np.int64),
                "n": np.asarray(c["n"], dtype=np.int64),
            }
        )
        return out

    def schema(self) -> dict:
        top = int(self.cube.top_age or max(90, int(np.max(self.cube.columns["age"]))))
        out = {"sex": np.array(["F", "M"]), "age": np.arange(0, top + 1)}
        for s in self.severities():
            out[episodes(s)] = np.arange(0, self.cube.episode_cap + 1)
        out.update(
            {
                "cond": np.arange(1 << len(self.cond_lists)),
                "drug": np.arange(1 << len(self.drug_lists)),
                "site": np.arange(1 << len(self.cube.sites)),
            }
        )
        return out

    def space(self, groups, moments: bool) -> Space:
        return Space(self.schema(), groups, moments, self.q)

    # ---- groups as plain data (the ledger): code lists by name -------------------------
    def to_data(self, g: Group) -> list:
        """``g`` as JSON-able data, the bits of code lists named."""
        terms = []
        for term in g.terms:
            out = []
            for dim, t in term:
                args = list(t.args)
                if dim in ("cond", "drug"):
                    names = self.cond_lists if dim == "cond" else self.drug_lists
                    args = [[n for i, n in enumerate(names) if a & (1 << i)] for a in args]
                out.append([dim, t.op, args])
            terms.append(out)
        return terms

    def from_data(self, terms) -> Group:
        """A group written by :meth:`to_data` (of this or another run's declarations)."""
        out = []
        for term in terms:
            tests = {}
            for item in term:
                dim, op, args = item
                _check_test(dim, op, args)
                if dim in ("cond", "drug"):
                    mask = self.cond_mask if dim == "cond" else self.drug_mask
                    args = [mask(a) for a in args]
                tests[dim] = Test(op, tuple(args))
            out.append(tuple(sorted(tests.items(), key=lambda kv: kv[0])))
        return Group(tuple(out))


def _count(table, row, column, label, group, value, step) -> Entry:
    """A released (or, NaN, withheld) count of ``group``: one number of ``table``."""
    return Entry(table, row, column, label, group, "count", _num(value), step)


def _decl_age_summary(d: Declarations, t, step):
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


def _decl_table_one(d, t, step):
    """Table 1: each characteristic's count in the pain cohort and in the rest; the mean and
    SD of age of both (the number of drugs is not a dimension of the attacker's space)."""

    rest = Group.of(**{d.q: age_in(0, 0)})
    rows = {
        "patients, n": ALL,
        "female": Group.of(sex=sex_is("F")),
        f"aged >= {d.params.elderly_age}": Group.of(age=d.elderly),
        "any risk condition": Group.of(cond=bits_any(d.any_cond)),
        "any risk drug": Group.of(drug=bits_any(d.any_drug)),
    }
    for name in d.params.risk_conditions:
        rows[condition_label(name)] = Group.of(cond=bits_any(d.cond(name)))
    out = []
    n_of = {}
    for i, r in t.iterrows():
        v = str(r["variable"])
        for side, among in (("pain", d.pain), ("rest", rest)):
            if v == "patients, n":
                n_of[side] = _num(r[f"{side}_n"])
            if v in rows:
                g = _and(among, rows[v])
                label = f"table_one {v} ({side})"
                out.append(_count("table_one", i, f"{side}_n", label, g, r[f"{side}_n"], step))
            elif v == "age, years":
                out.append(
                    Entry(
                        "table_one",
                        i,
                        f"{side}_mean",
                        f"table_one mean and SD of age ({side})",
                        among,
                        "moments",
                        n_of.get(side),
                        step,
                        mean=_num(r[f"{side}_mean"]),
                        sd=_num(r[f"{side}_sd"]),
                    )
                )
    return out


def _decl_attrition(d, t, step):
    """The attrition steps inside the population (the database's own steps and the left
    out lie outside the attacker's space, the population's patients)."""
    groups = {
        "all_patients": ALL,
        "pain": d.pain,
        "pain_risk_condition": d.pain_risk(),
        "target": d.target(),
    }
    return [
        _count("attrition", i, "n", f"attrition {r['step']}", groups[r["step"]], r["n"], step)
        for i, r in t.iterrows()
        if r["step"] in groups
    ]


def _decl_eligibility_estimate(d, t, step):
    out = []
    for i, r in t.iterrows():
        what = "eligibility_estimate"
        out.append(_count(what, i, "target_n", f"{what} target", d.target(), r["target_n"], step))
        out.append(
            _count(what, i, "population_n", f"{what} population", ALL, r["population_n"], step)
        )
    return out


def _and(a: Group, b: Group) -> Group:
    """Both groups: every term of ``a`` with every term of ``b``."""
    return Group(
        tuple(
            tuple(sorted({**dict(x), **dict(y)}.items(), key=lambda kv: kv[0]))
            for x in a.terms
            for y in b.terms
        )
    )


def _decl_sensitivity_grid(d, t, step):
    """Each cell of the grid counts the population, its pain cohort and its target
    subgroup under the cell's parameters (:func:`analysis.sensitivity.sensitivity_table`)."""

    if d.grid is None:
        return []
    base = _cell_params(d.params, d.grid.base, source=f"{d.grid.source} (base)")
    grid = with_base(d.grid, base)
    out = []
    for i, r in t.iterrows():
        changes = {}
        for name, items in grid.vary.items():
            value = dict((str(label), v) for label, v in items).get(str(r[name]))
            if value is None:
                break
            changes[name] = value
        else:
            p = _cell_params(base, changes, source=grid.source)
            cell = ", ".join(f"{n} {r[n]}" for n in grid.vary)
            for col, g, what in (
                ("target_n", d.target(p), "target subgroup"),
                ("pain_n", d.pain_of(p), "pain cohort"),
                ("population_n", ALL, "population"),
            ):
                if col in t.columns:
                    out.append(
                        _count(
                            "sensitivity_grid",
                            i,
                            col,
                            f"sensitivity_grid {what} ({cell})",
                            g,
                            r[col],
                            step,
                        )  # fmt: skip
                    )
    return out


DECLARED = {
    "table_one": _decl_table_one,
    "attrition": _decl_attrition,
    "eligibility_estimate": _decl_eligibility_estimate,
    "sensitivity_grid": _decl_sensitivity_grid,
    "age_summary": _decl_age_summary,
    "sex": _decl_sex,
    "age_sex_pyramid": _decl_pyramid,
    "age_by_sex_counts": _decl_age_by_sex,
    "condition_prevalence": _decl_condition_prevalence,
    "condition_combinations": _decl_combinations,
    "site_prevalence": _decl_site_prevalence,
}
"""Table -> the function that declares each of its numbers as a function of a group."""

OUTSIDE = {
    "code_coverage": "records of the database (codes), not patients of the population",
    "completeness": "records of the database, not patients of the population",
    "duplicates": "records and patients of the database, before the population is drawn",
    "plausibility": "records and patients of the database, before the population is drawn",
    "unmatched_codes": "records and patients of the database, before the population is drawn",
    "practices": "counts per practice: the practice is not a dimension of the attacker's "
    "space (the complementary-practices rule protects them)",
}
"""Tables with counts the attacker's space does not hold, and why; any other table with
counts and no declaration is refused under a rule."""


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
        v = f.get("numerator") if "pct" in fid else f.get("value")  # a share: its count
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


FIGURE_GROUPS = {
    "population.n": "population",
    "population.female_pct": "female",
    "population.elderly_pct": "elderly",
    "pain.n": "pain",
    "pain.male_pct": "pain_male",
    "pain.recurrent_pct": "pain_recurrent",
    "pain.elderly_pct": "pain_elderly",
    "pain_risk.n": "pain_risk",
    "pain_risk_drug.pct_of_pain": "pain_risk_drug",
    "target.n": "target",
    "population.age": "population",
    "pain.age": "pain",
}
"""Figure -> the group of :func:`analysis.cohort.nested_groups` it counts (withholding the
group withholds every figure and statistic of it)."""


# ----------------------------------------------------------------------------- a run's audit
REPEATED = "every number as runs before it released it on the same data: nothing new to audit"


class RunAuditor:
    """What one run has released so far (with what earlier runs on the same data released,
    from the ledger), and the audit of each table it releases next.

    ``cube`` / ``params``: the run's; ``figures``: the ``results.csv`` figures it releases
    (:meth:`analysis.study.Study.figures`; none for a notebook without them); ``ledger``
    (:class:`analysis.outputs.ledger.Ledger`): what runs before it released, and where its
    own releases go; ``rebuild(**cube options)`` -> a cube of the same data that holds the
    severities, episode counts and code lists the ledger's numbers ask about, where the
    run's own does not; ``grid``: the sensitivity grid the run releases, if any."""

    def __init__(
        self, cube, params, rule, figures=(), ledger=None, rebuild=None, grid=None, study=None
    ):
        self.rule = rule
        self.ledger = ledger
        self.grid = grid
        earlier = ledger.earlier() if ledger is not None else []
        if cube.top_age is None or cube.top_age > TOP_AGE_FLOOR:
            cube = cube.top_coded(TOP_AGE_FLOOR)
        try:
            need = _needs(earlier)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise AnalysisError(
                f"Disclosure ledger {ledger.path}: a record is not one the audit wrote "
                f"({type(exc).__name__}); nothing is released."
            ) from None
        if not _covers(cube, need):
            if rebuild is None:
                raise ValueError("the ledger asks about definitions this run's cube lacks")
            cube = rebuild(
                severities=tuple(sorted(need["severities"] | set(cube.severities))),
                episode_cap=max(need["cap"], cube.episode_cap),
                condition_lists=tuple(dict.fromkeys((*cube.condition_lists, *need["cond"]))),
                drug_lists=tuple(dict.fromkeys((*cube.drug_lists, *need["drug"]))),
            )
            if cube.top_age is None or cube.top_age > TOP_AGE_FLOOR:
                cube = cube.top_coded(TOP_AGE_FLOOR)
        self.d = Declarations(cube, params, cube.condition_lists, cube.drug_lists)
        self.d.grid = grid
        self.cells = self.d.cells()
        self.withheld_by_audit: list[dict] = []
        self.unresolved: list[dict] = []  # what follows from numbers released before a table
        self.known: set = set()
        self.method = ""
        self.sensitive: list = []
        self.earlier_runs: list[str] = []
        self.left_aside = 0  # numbers of earlier runs about another definition's sites
        self.released: list[Entry] = []
        self.earlier_sensitive: list = []  # the finest cells earlier runs' tables classify
        seen, tables_seen = set(), set()
        for rec in earlier:
            if rec.get("site_severity") != params.min_severity and any(
                dim == "site" for e in rec["entries"] for t in e["group"] for dim, *_ in t
            ):
                self.left_aside += len(rec["entries"])
                continue
            for x in rec["entries"]:  # each number once (every run releases the figures)
                key = json.dumps([x.get(k) for k in ("group", "kind", "value", "mean", "sd")])
                if key not in seen:
                    seen.add(key)
                    try:
                        self.released.append(_entry_from(self.d, str(rec.get("run", "?")), x))
                    except (KeyError, TypeError, ValueError) as exc:
                        raise AnalysisError(
                            f"Disclosure ledger {ledger.path}: a record of run "
                            f"{str(rec.get('run'))[:80]!r} is not one the audit wrote ({exc}); "
                            "nothing is released. Remove the ledger only if no file of this "
                            "reports folder was ever released."
                        ) from None
            if rec.get("table") not in tables_seen:
                tables_seen.add(rec.get("table"))
                self.earlier_sensitive += SENSITIVE.get(rec.get("table"), lambda d: [])(self.d)
            self.earlier_runs.append(str(rec.get("run", "?")))
        self.earlier_runs = sorted(set(self.earlier_runs))
        self._pending: list = []
        self._dims: set = set()
        self._table_tests: set = set()
        self._table_ages = True
        self.study = study
        mine = _figure_entries(self.d, list(figures), rule.round_to)
        if self.released and study is not None:
            if self._repeats(mine):
                self.method = REPEATED
            else:
                mine = self._audit_figures(mine)
        self._record("results", mine)
        self.released += mine

    def _audit_figures(self, mine: list[Entry]) -> list[Entry]:
        """The figures every run writes, audited with what earlier runs released: where
        one would follow, the group the figures count is withheld (as the rule withholds
        a nested group: every figure, table and sentence of the group follows it)."""
        for _ in range(MAX_ROUNDS):
            self._dims = {dim for x in mine for dim, _ in x.group.tests()}
            self._table_tests = {t for x in mine for t in x.group.tests()}
            self._table_ages = _speaks_of_ages(mine)
            found, self.method = self._audit(self.released + mine, self.sensitive, self._dims)
            found = [f for f in found if f.quantity not in self.known]
            if not found:
                return mine
            self._pending = self.sensitive
            choice = self._least_loss(mine, found[0])
            group = FIGURE_GROUPS.get(str(choice.row)) if choice is not None else None
            if group is None or group in self.study.withheld_groups:
                self.known.add(found[0].quantity)
                self.unresolved.append({"table": "results", "what": found[0].words()})
                continue
            self.study.withheld_groups.add(group)
            self.withheld_by_audit.append(
                {"table": "results", "withheld": choice.label, "why": found[0].words()}
            )
            mine = _figure_entries(self.d, self.study.figures(), self.rule.round_to)

        raise AnalysisError(
            f"The disclosure audit of the figures did not settle in {MAX_ROUNDS} rounds."
        )

    def _repeats(self, entries: list[Entry]) -> bool:
        """Whether every entry is one released before (same group, same numbers)."""
        known = {self._key(e) for e in self.released}
        return all(self._key(e) in known for e in entries)

    def _key(self, e: Entry) -> str:
        x = _entry_to(self.d, e)
        x.pop("label")
        for k in ("value", "step", "mean", "sd", "decimals"):
            x[k] = None if x[k] is None else float(x[k])
        return json.dumps(x, sort_keys=True)

    def _record(self, table: str, entries: list[Entry]) -> None:
        if self.ledger is not None and entries:
            self.ledger.append(
                table,
                [_entry_to(self.d, e) for e in entries],
                site_severity=self.d.params.min_severity,
            )

    def _stages(self, entries, sensitive, dims):
        """The attacker's spaces, in order: (1) this run's numbers about the dimensions of
        the table being audited (and sex and age), exactly, as an integer programme; (2)
        every number of this run, as the LP relaxation (a lower bound on the attacker), the
        means of age left out where single years would make the space too large; (3) with
        the numbers of earlier runs (the ledger) about the table's own dimensions: for a
        table of ages, every earlier number of sex and age; for a table of pain, risk
        groups or sites, the earlier numbers that count those (the episode counts of every
        severity are one family). Exact where small, else the LP."""
        dims = set(dims or ()) | {"sex", "age"}
        own = [x for x in entries if not x.earlier]
        earlier = [x for x in entries if x.earlier]
        family = set(dims)
        if any(d.startswith("q") for d in dims):
            family |= {episodes(s) for s in self.d.severities()}
        profile = family - {"sex", "age"}

        def tested(g):
            return {dim for dim, _ in g.tests()}

        def within(g, allowed=dims):
            return tested(g) <= allowed

        def build(es, ss, ages=True):
            # single years wherever a mean of age is declared (released or not), so that
            # withholding a number keeps the same space
            if not ages:
                es = [x for x in es if x.kind != "moments"]
            moments = any(x.kind == "moments" for x in es)
            groups = [x.group for x in es] + [g for _, g in ss]
            try:
                return self.d.space(groups, moments), es, ss, ""
            except _TooLarge:
                es = [x for x in es if x.kind != "moments"]
                groups = [x.group for x in es] + [g for _, g in ss]
                try:
                    return self.d.space(groups, False), es, ss, ", means of age left out"
                except _TooLarge:
                    return None

        es = [x for x in own if within(x.group)]
        ss = [(label, g) for label, g in sensitive if within(g)]
        built = build(es, ss)
        if built is not None:
            yield (*built, None, f"the numbers about {', '.join(sorted(dims))}")
        if len(es) < len(own) or len(ss) < len(sensitive):
            built = build(own, sensitive)
            what = "every number of the run"
            if built is None:  # too many combinations: those of the table's dimensions
                wider = dims | {episodes(s) for s in self.d.severities()}
                built = build(
                    [x for x in own if within(x.group, wider)],
                    [(label, g) for label, g in sensitive if within(g, wider)],
                )
                what = f"every number of the run about {', '.join(sorted(wider))}"
            if built is not None:
                yield (*built, False, what)
        if earlier:
            mine = [x for x in own if within(x.group, family)]
            theirs = [
                x
                for x in earlier
                if within(x.group, family) and (not profile or tested(x.group) & profile)
            ]
            ss = [
                (label, g) for label, g in sensitive + self.earlier_sensitive if within(g, family)
            ]
            # means of age across runs where the table speaks of ages (a mean, or counts
            # of 5 years or less): elsewhere they stay within their own runs' audits
            ages = self._table_ages
            built = build(theirs + mine, ss, ages)
            what = (
                f"with {len(theirs)} numbers of earlier runs on the same data, those about "
                f"{', '.join(sorted(family))}" + ("" if ages else " (means of age within runs)")
            )
            if built is None:
                # too many combinations: the earlier numbers that ask the table's own
                # questions (each of their tests one of the table's), a lower bound
                asked = self._table_tests
                theirs = [x for x in theirs if set(x.group.tests()) <= asked]
                mine = [x for x in mine if set(x.group.tests()) <= asked]
                built = build(theirs + mine, [], ages)
                what = (
                    f"with {len(theirs)} numbers of earlier runs on the same data that ask "
                    "the table's own questions (a lower bound: a space of every earlier "
                    "number about them would be too large)"
                )
            if built is not None:
                yield (*built, None, what)

    def _audit(self, entries, sensitive, dims=None):
        methods = []
        for space, es, ss, note, exact, what in self._stages(entries, sensitive, dims):
            found, method = audit(
                space, es, space.truth(self.cells), self.rule.threshold, ss, exact
            )
            methods.append(f"{what}: {method}{note}")
            for f in found:
                f.stage = what
            if found:
                return found, "; ".join(methods)
        return [], "; ".join(methods)

    def _least_loss(self, entries, finding):
        """The released number of this table that loses least and protects what the
        finding names: the smallest group, among those that hold its patients, whose
        withholding does (a mean and SD before the count they describe); None when
        withholding every number of the table would not (it follows from what was
        released before). At most ``MAX_TRIES`` are tried; else the smallest goes first
        and the audit runs again."""
        import dataclasses

        q, kind = finding.what

        def fixes(withheld: set) -> bool:
            trial = [
                dataclasses.replace(x, value=None, mean=None) if id(x) in withheld else x
                for x in self.released + entries
            ]
            for space, es, _ss, _note, exact, what in self._stages(
                trial, self._pending, self._dims
            ):
                if what != finding.stage:
                    continue
                mask = _same_atoms(finding, space, self)
                if mask is None:
                    return False
                return check(Problem(space, es, exact), mask, kind, self.rule.threshold)[0] is None
            return False

        def order(e):
            return (e.value if e.value is not None else math.inf, e.kind != "moments")

        released = [e for e in entries if e.released]
        if not released or not fixes({id(e) for e in released}):
            return None
        # first the numbers the quantity is made of ("A but not B"), then the smallest;
        # a number the table shows in several rows (a grid cell's count under each benefit
        # share) is tried, and withheld, in all of them at once
        named = [e for e in released if e.label and e.label in finding.quantity]
        pool, seen = [], set()
        for e in sorted(named, key=order) + sorted(
            (e for e in released if e not in named), key=order
        ):
            if _twin_key(e) not in seen:
                seen.add(_twin_key(e))
                pool.append(e)
        for e in pool[:MAX_TRIES]:
            if fixes({id(x) for x in twins(e, entries)}):
                return e
        return pool[0]

    def release(self, df, name: str, protect_with):
        """Protect ``df`` as ``name`` (``protect_with(force)`` -> Protected), audit it with
        everything released before, withhold more where the audit finds a quantity
        unprotected, and return the final Protected."""

        force: dict[str, set] = {}
        for _ in range(MAX_ROUNDS):
            protected = protect_with(force)
            fn = DECLARED.get(name)
            if fn is None:
                _refuse_undeclared(name)
            entries = fn(self.d, _with_left_out(protected), self.rule.round_to) if fn else []
            if not entries:
                return protected
            if not force and self._repeats(entries):
                # every number, released or withheld, as a run before released it: the
                # files show nothing new (a scenario that changes no count repeats them)
                self.released = self.released + entries
                self._record(name, entries)
                self.method = self.method or REPEATED
                return protected
            sensitive = self.sensitive + SENSITIVE.get(name, lambda d: [])(self.d)
            self._dims = {dim for x in entries for dim, _ in x.group.tests()}
            self._table_tests = {t for x in entries for t in x.group.tests()}
            self._table_ages = _speaks_of_ages(entries)
            found, self.method = self._audit(self.released + entries, sensitive, self._dims)
            found = [f for f in found if f.quantity not in self.known]
            if not found:
                self.released = self.released + entries
                self.sensitive = sensitive
                self._record(name, entries)
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
            same = twins(choice, entries)
            for twin in same:
                for c in ("mean", "sd") if twin.kind == "moments" else (twin.column,):
                    force.setdefault(c, set()).add(twin.row)
            more = (
                f" (and {len(same) - 1} more row(s) showing the same number)"
                if len(same) > 1
                else ""
            )
            self.withheld_by_audit.append(
                {"table": name, "withheld": choice.label + more, "why": found[0].words()}
            )
        raise AnalysisError(
            f"Table {name}: the disclosure audit did not settle in {MAX_ROUNDS} rounds."
        )


def _twin_key(e: Entry):
    return (e.kind, e.group, e.value, e.mean, e.sd)


def twins(e: Entry, entries: list[Entry]) -> list[Entry]:
    """The released entries of a table that show the same number as ``e`` (same group,
    same value): withholding one alone hides nothing."""
    return [x for x in entries if x.released and _twin_key(x) == _twin_key(e)] or [e]


def _speaks_of_ages(entries) -> bool:
    """A mean of age, or a count of an age span of 5 years or less."""
    return any(
        x.kind == "moments"
        or any(
            dim == "age" and t.args[1] is not None and t.args[1] - t.args[0] < 5
            for dim, t in x.group.tests()
        )
        for x in entries
    )


OPS = {"is": 1, "between": 2, "any": 1, "equal": 2}


def _check_test(dim, op, args) -> None:
    """A test read from a ledger: a known dimension, operation and arguments, or refused."""
    import re

    ok = (
        isinstance(dim, str)
        and (dim in ("sex", "age", "cond", "drug", "site") or re.fullmatch(r"q\d{1,2}", dim))
        and op in OPS
        and isinstance(args, list)
        and len(args) == OPS[op]
    )
    if ok and dim in ("cond", "drug"):
        ok = op in ("any", "equal") and all(
            isinstance(a, list) and all(isinstance(n, str) for n in a) for a in args
        )
    elif ok and dim == "sex":
        ok = op == "is" and args[0] in ("F", "M")
    elif ok:
        ok = all(a is None or (isinstance(a, int) and not isinstance(a, bool)) for a in args)
    if not ok:
        raise ValueError(f"not a test of the disclosure ledger: {[dim, op, args]!r}")


def _entry_to(d: Declarations, e: Entry) -> dict:
    """An entry as a ledger holds it: the released number and the group it counts."""
    return {
        "label": e.label,
        "kind": e.kind,
        "value": e.value,
        "step": e.step,
        "mean": e.mean,
        "sd": e.sd,
        "decimals": e.decimals,
        "group": d.to_data(e.group),
    }


def _entry_from(d: Declarations, run: str, x: dict) -> Entry:
    """A ledger's entry as an entry of this run's audit (its label names the run)."""

    def num(v):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise ValueError(f"not a number: {v!r}")
        return None if v is None else float(v)

    if x.get("kind") not in ("count", "moments"):
        raise ValueError(f"not a kind of number: {x.get('kind')!r}")

    return Entry(
        "earlier",
        None,
        "value",
        f"{run}: {x['label']}",
        d.from_data(x["group"]),
        str(x["kind"]),
        num(x.get("value")),
        int(x.get("step") or 1),
        num(x.get("mean")),
        num(x.get("sd")),
        int(x.get("decimals") or 1),
        earlier=True,
    )


def _needs(records) -> dict:
    """The severities, largest episode count and code lists the records' groups ask about."""
    need = {"severities": set(), "cap": 0, "cond": [], "drug": []}
    for rec in records:
        for e in rec["entries"]:
            for term in e["group"]:
                for dim, op, args in term:
                    _check_test(dim, op, args)
                    if dim.startswith("q"):
                        need["severities"].add(int(dim[1:]))
                        need["cap"] = max(need["cap"], int(args[0]))
                    elif dim in ("cond", "drug"):
                        for names in args:
                            need[dim] += [n for n in names if n not in need[dim]]
    return need


def _covers(cube, need) -> bool:
    return (
        need["severities"] <= set(cube.severities)
        and need["cap"] <= cube.episode_cap
        and set(need["cond"]) <= set(cube.condition_lists)
        and set(need["drug"]) <= set(cube.drug_lists)
        and (cube.detail or not (need["cond"] or need["drug"]))
    )


def _refuse_undeclared(name: str) -> None:
    """A table with counts and neither a declaration nor a reason to lie outside the
    attacker's space is refused (as an undeclared table is)."""

    if spec_for(name).counts and name not in OUTSIDE:
        raise AnalysisError(
            f"Table {name}: its counts are not declared to the disclosure audit "
            "(analysis.outputs.auditor.DECLARED: each count as a group of patients), so it "
            "cannot be released under a rule."
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
