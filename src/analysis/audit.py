"""Reproduction audit: published figures against recomputed ones, and the arithmetic of
the published figures themselves.

Checks of the published figures need no patient data:

* **GRIM** (Brown and Heathers, Soc Psychol Personal Sci 2017;8:363-369, "The GRIM test",
  preprint 2016): a mean of integers (or a percentage of a count) over ``n`` can only take
  values ``k / n``; a printed value is consistent when some integer ``k`` rounds to it.
  The counts each percentage implies are listed.
* **Cross-figure agreement**: a subgroup reported as a share of two denominators (or as a
  count and a share) must have one count that fits both.
* **SD bounds** (the logic of SPRITE, Heathers et al., PeerJ Preprints 2018;6:e26968v1):
  given ``n``, the mean, the range and subgroup counts (for example at least 121 patients
  aged 75 or more), the smallest and largest SD of integer ages are computed exactly: the
  largest at a vertex of the feasible set (every age at a bound but one), the smallest by
  the greedy water-filling that is optimal for separable convex problems. A printed SD
  outside [min, max] is impossible, and the arithmetic says why.

All comparisons use exact rational arithmetic on the printed values (a printed 58.52 means
any value in [58.515, 58.525]; both halves of a tie are accepted).
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import paths
from analysis.data.digests import _cache_folder
from analysis.display import Summary
from analysis.errors import AnalysisError
from analysis.estimates import normal_quantile
from analysis.files import atomic_write_text
from analysis.params import DEFAULTS

ELDERLY_AGE = 75
"""The paper's target subgroup is aged this or more (years): a constraint on the ages."""
AGE_SPAN = 120
"""The oldest age assumed when a paper prints no age range (years)."""
GRIM_REF = "Brown NJL, Heathers JAJ. The GRIM test. Soc Psychol Personal Sci 2017;8:363-369"
SPRITE_REF = (
    "Heathers JAJ et al. Recovering data from summary statistics: SPRITE. "
    "PeerJ Preprints 2018;6:e26968v1"
)


# ----------------------------------------------------------------------------- published
@dataclass(frozen=True)
class Published:
    id: str
    figure: str
    description: str
    published: str
    decimals: int
    unit: str
    denominator_id: str
    denominator_n: int | None
    quote: str

    @property
    def value(self) -> Fraction:
        return Fraction(self.published)

    def interval(self) -> tuple[Fraction, Fraction]:
        """The values that print as ``published`` at its precision (both ends included)."""
        h = Fraction(1, 2 * 10**self.decimals)
        return self.value - h, self.value + h


def load_published(path: str | Path | None = None) -> list[Published]:
    path = Path(path or paths.REFERENCE / "published.csv")
    if not path.exists():
        raise AnalysisError(f"Published-figures file {path} does not exist.")
    need = {
        "id",
        "figure",
        "description",
        "published",
        "decimals",
        "unit",
        "denominator_id",
        "denominator_n",
        "quote",
    }
    out = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = need - set(reader.fieldnames or [])
        if missing:
            raise AnalysisError(f"{path}: missing column(s) {', '.join(sorted(missing))}.")
        for i, row in enumerate(reader, start=1):
            try:
                Fraction(row["published"])
                dec = int(row["decimals"])
                den = int(row["denominator_n"]) if row["denominator_n"].strip() else None
            except (ValueError, ZeroDivisionError):
                raise AnalysisError(
                    f"{path}, row {i}: 'published' must be a number as printed, "
                    "'decimals' and 'denominator_n' whole numbers."
                ) from None
            out.append(
                Published(
                    row["id"],
                    row["figure"],
                    row["description"],
                    row["published"].strip(),
                    dec,
                    row["unit"],
                    row["denominator_id"],
                    den,
                    row["quote"],
                )
            )
    return out


# ----------------------------------------------------------------------------- GRIM
def grim_counts(
    printed: str | float,
    n: int,
    *,
    percent: bool = True,
    decimals: int | None = None,
    items: int = 1,
) -> list[int]:
    """Every integer total ``k`` (0..n x items) whose share ``k / (n x items)`` (x 100 for a
    percentage) prints as ``printed`` at its precision."""
    text = str(printed)
    d = decimals if decimals is not None else (len(text.split(".")[1]) if "." in text else 0)
    v = Fraction(text)
    h = Fraction(1, 2 * 10**d)
    scale = 100 if percent else 1
    denom = n * items
    lo = math.ceil((v - h) * denom / scale)
    hi = math.floor((v + h) * denom / scale)
    top = denom if percent else None
    ks = [k for k in range(max(lo, 0), hi + 1) if top is None or k <= top]
    return ks


def grim_consistent(printed, n, **kw) -> bool:
    return bool(grim_counts(printed, n, **kw))


# ----------------------------------------------------------------------------- SD bounds
@dataclass(frozen=True)
class SDBounds:
    n: int
    sum_range: tuple[int, int]
    min_sd: float
    max_sd: float
    min_example: dict
    max_example: dict
    ddof: int

    def possible(self, printed: str) -> bool:
        v = Fraction(printed)
        d = len(printed.split(".")[1]) if "." in printed else 0
        h = Fraction(1, 2 * 10**d)
        return float(v + h) >= self.min_sd - 1e-12 and float(v - h) <= self.max_sd + 1e-12


def _sd(sum_sq: float, total: int, n: int, ddof: int) -> float:
    ss = sum_sq - total * total / n
    return math.sqrt(max(ss, 0.0) / (n - ddof))


def _min_sum_sq(
    lower: np.ndarray, upper: np.ndarray, total: int
) -> tuple[float, np.ndarray] | None:
    """Smallest sum of squares of integers x_i in [lower_i, upper_i] summing to ``total``
    (greedy water-filling: optimal for a separable convex objective)."""
    lower = lower.astype(np.int64)
    upper = upper.astype(np.int64)
    if total < lower.sum() or total > upper.sum():
        return None
    # the continuous optimum is x_i = clip(c, l_i, u_i); find the integer level c
    lo_c, hi_c = int(lower.min()), int(upper.max())
    while lo_c < hi_c:  # largest c with sum(clip(c)) <= total
        mid = (lo_c + hi_c + 1) // 2
        if np.clip(mid, lower, upper).sum() <= total:
            lo_c = mid
        else:
            hi_c = mid - 1
    x = np.clip(lo_c, lower, upper)
    rest = int(total - x.sum())
    if rest:
        can = np.flatnonzero((x == lo_c) & (x < upper))
        x[can[:rest]] += 1
    return float(np.dot(x.astype(float), x)), x


def _max_sum_sq(groups, total: int):
    """Largest sum of squares: every variable at a bound except at most one.

    ``groups``: list of (count, lower, upper). Enumerates (vectorized) how many of each
    group sit at their upper bound, and which group holds the one value between bounds.
    Returns (sum of squares, ups per group, (group, value) of the free value or None)."""
    grids = np.meshgrid(*[np.arange(c + 1) for c, _, _ in groups], indexing="ij")
    ups = [g.ravel().astype(np.int64) for g in grids]
    s_bound = sum(c * lo + u * (hi - lo) for u, (c, lo, hi) in zip(ups, groups, strict=True))
    ss_bound = sum(
        u * hi * hi + (c - u) * lo * lo for u, (c, lo, hi) in zip(ups, groups, strict=True)
    )
    rest = total - s_bound
    best_ss = np.where(rest == 0, ss_bound.astype(float), -np.inf)
    best_free = np.full(len(rest), -1)
    for j, (c, lo, hi) in enumerate(groups):
        ok = (ups[j] < c) & (rest > 0) & (rest < hi - lo)
        ss = np.where(ok, ss_bound - lo * lo + (lo + rest) ** 2, -np.inf).astype(float)
        better = ss > best_ss
        best_ss = np.where(better, ss, best_ss)
        best_free = np.where(better, j, best_free)
    i = int(np.argmax(best_ss))
    if not np.isfinite(best_ss[i]):
        return None
    j = int(best_free[i])
    free = None if j < 0 else (j, int(groups[j][1] + rest[i]))
    return float(best_ss[i]), tuple(int(u[i]) for u in ups), free


def sd_bounds(
    n: int,
    mean: str,
    low: int,
    high: int,
    *,
    require_extremes: bool = True,
    at_least: tuple[int, int] | None = None,
    ddof: int = 1,
) -> SDBounds:
    """Smallest and largest SD of ``n`` integers in [low, high] whose mean prints as
    ``mean``; with ``require_extremes`` the reported range is attained (one value equals
    ``low`` and one ``high``); ``at_least=(k, t)``: at least k values are >= t.

    Exact: the minimum by water-filling, the maximum over the vertices of the feasible set.
    """
    d = len(mean.split(".")[1]) if "." in mean else 0
    h = Fraction(1, 2 * 10**d)
    m = Fraction(mean)
    s_lo, s_hi = math.ceil((m - h) * n), math.floor((m + h) * n)
    k, t = at_least if at_least else (0, low)
    fixed_lo = 1 if require_extremes else 0
    fixed_hi = 1 if require_extremes else 0
    # the value fixed at `high` counts towards "at least k values >= t"
    k_rest = max(0, k - (fixed_hi if high >= t else 0))
    n_free = n - fixed_lo - fixed_hi - k_rest
    if n_free < 0:
        raise AnalysisError("SD bounds: the constraints need more values than n.")
    best_min, best_max = None, None
    for total in range(s_lo, s_hi + 1):
        rest_total = total - fixed_lo * low - fixed_hi * high
        lower = np.array([low] * n_free + [t] * k_rest)
        upper = np.array([high] * (n_free + k_rest))
        mn = _min_sum_sq(lower, upper, rest_total)
        if mn is not None:
            ss = mn[0] + fixed_lo * low**2 + fixed_hi * high**2
            sd = _sd(ss, total, n, ddof)
            if best_min is None or sd < best_min[0]:
                vals, cnt = np.unique(mn[1], return_counts=True)
                ex = {int(a): int(b) for a, b in zip(vals, cnt, strict=True)}
                for v_, c_ in ((low, fixed_lo), (high, fixed_hi)):
                    if c_:
                        ex[v_] = ex.get(v_, 0) + c_
                best_min = (sd, total, dict(sorted(ex.items())))
        mx = _max_sum_sq([(n_free, low, high), (k_rest, t, high)], rest_total)
        if mx is not None:
            ss = mx[0] + fixed_lo * low**2 + fixed_hi * high**2
            sd = _sd(ss, total, n, ddof)
            if best_max is None or sd > best_max[0]:
                ups, free = mx[1], mx[2]
                ex: dict[int, int] = {}
                for (c, lo, hi), u in zip(
                    [(n_free, low, high), (k_rest, t, high)], ups, strict=True
                ):
                    ex[hi] = ex.get(hi, 0) + u
                    ex[lo] = ex.get(lo, 0) + (c - u)
                if free:
                    j, v = free
                    lo_j = [low, t][j]
                    ex[lo_j] -= 1
                    ex[v] = ex.get(v, 0) + 1
                for v_, c_ in ((low, fixed_lo), (high, fixed_hi)):
                    if c_:
                        ex[v_] = ex.get(v_, 0) + c_
                best_max = (sd, total, {a: b for a, b in sorted(ex.items()) if b})
    if best_min is None or best_max is None:
        raise AnalysisError(
            f"SD bounds: no {n} integers in [{low}, {high}] have a mean that "
            f"prints as {mean} under the constraints."
        )
    return SDBounds(n, (s_lo, s_hi), best_min[0], best_max[0], best_min[2], best_max[2], ddof)


def subgroup_sd_ceiling(
    n: int, mean: str, sd: str, n_sub: int, mean_sub: str, ddof: int = 1
) -> float:
    """Largest SD a subgroup of ``n_sub`` can have inside a population of ``n`` with the
    printed mean and SD: its sum of squares about its own mean cannot exceed the
    population's, less the part the two group means explain (rounding taken in the
    subgroup's favour)."""

    def widest(text):
        d = len(text.split(".")[1]) if "." in text else 0
        h = Fraction(1, 2 * 10**d)
        return Fraction(text) - h, Fraction(text) + h

    _, sd_hi = widest(sd)
    ss_total = float(sd_hi) ** 2 * (n - ddof)
    m_lo, m_hi = widest(mean)
    s_lo, s_hi = widest(mean_sub)
    # smallest between-group sum of squares over the rounding intervals
    best = math.inf
    for m in (m_lo, m_hi, (m_lo + m_hi) / 2):
        for s in (s_lo, s_hi, (s_lo + s_hi) / 2):
            m, s = float(m), float(s)
            rest_mean = (n * m - n_sub * s) / (n - n_sub)
            between = n_sub * (s - m) ** 2 + (n - n_sub) * (rest_mean - m) ** 2
            best = min(best, between)
    # closest the two means can be
    if float(s_lo) <= float(m_hi) and float(s_hi) >= float(m_lo):
        best = 0.0
    return math.sqrt(max(ss_total - best, 0.0) / (n_sub - ddof))


# ----------------------------------------------------------------------------- the audit
AUDIT_COLUMNS = ("check", "figures", "method", "reference", "result", "verdict", "arithmetic")


def consistency_audit(published: list[Published] | None = None) -> pd.DataFrame:
    """Checks of the published figures against each other, without patient data: one row
    per check with its method, reference, result, verdict and the arithmetic. It depends
    on the published figures and this module's code alone, so it is computed once and
    remembered in the cache folder (``ANALYSIS_CACHE``; the exact SD bounds take seconds)."""
    published = tuple(published or load_published())
    remembered = _remembered(published)
    if remembered is not None:
        return remembered
    table = _consistency_audit(published).copy()
    _remember(published, table)
    return table


def _audit_key(published) -> str:
    """sha256 of the published figures and of this module's source."""
    import dataclasses
    import hashlib
    import json

    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(json.dumps([dataclasses.asdict(p) for p in published], default=str).encode())
    return h.hexdigest()


def _remembered(published) -> pd.DataFrame | None:
    """The audit remembered for these figures and this code, or None (none, or a file that
    is not one this module wrote: then it is computed again)."""
    import json

    folder = _cache_folder()
    if folder is None:
        return None
    path = folder / "consistency-audit" / f"{_audit_key(published)}.json"
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(rows, list) or not all(
        isinstance(r, dict)
        and set(r) == set(AUDIT_COLUMNS)
        and all(isinstance(v, str) for v in r.values())
        for r in rows
    ):
        return None
    return pd.DataFrame(rows, columns=list(AUDIT_COLUMNS)) if rows else None


def _remember(published, table: pd.DataFrame) -> None:
    import json

    folder = _cache_folder()
    if folder is None or list(table.columns) != list(AUDIT_COLUMNS):
        return
    try:
        (folder / "consistency-audit").mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            folder / "consistency-audit" / f"{_audit_key(published)}.json",
            json.dumps(table.to_dict(orient="records")),
        )
    except OSError:  # a cache that cannot be written is only slower
        pass


@functools.lru_cache(maxsize=8)
def _consistency_audit(published: tuple[Published, ...]) -> pd.DataFrame:
    """Every check of :data:`CHECKS`, in order, one row per check made."""
    pub = {p.id: p for p in published}
    rows = []

    def add(check, figures, method, reference, result, verdict, arithmetic):
        rows.append(
            {
                "check": check,
                "figures": figures,
                "method": method,
                "reference": reference,
                "result": result,
                "verdict": verdict,
                "arithmetic": arithmetic,
            }
        )

    for check in CHECKS:
        check(pub, add)
    return pd.DataFrame(rows)


def _grim(pub: dict, add) -> None:
    """GRIM on every percentage and mean."""
    for p in pub.values():
        if p.unit == "percent" and p.denominator_n:
            ks = grim_counts(p.published, p.denominator_n, decimals=p.decimals)
            shown = ", ".join(str(k) for k in ks[:6]) + (" ..." if len(ks) > 6 else "")
            add(
                f"GRIM: {p.published}% of {p.denominator_n}",
                p.figure,
                "an integer count k with 100 k / n printing as the value",
                GRIM_REF,
                f"implied count(s): {shown or 'none'}",
                "consistent" if ks else "inconsistent",
                f"{p.published}% is [{float(p.interval()[0]):g}, {float(p.interval()[1]):g}]%; "
                f"x {p.denominator_n} / 100 = "
                f"[{float(p.interval()[0] * p.denominator_n / 100):.3f}, "
                f"{float(p.interval()[1] * p.denominator_n / 100):.3f}]",
            )
        if p.unit == "years" and p.id.endswith("age_mean") and p.denominator_n:
            ks = grim_counts(p.published, p.denominator_n, percent=False, decimals=p.decimals)
            informative = p.denominator_n < 10**p.decimals
            add(
                f"GRIM: mean {p.published} of {p.denominator_n} integer ages",
                p.figure,
                "an integer sum of ages S with S / n printing as the mean",
                GRIM_REF,
                f"{len(ks)} possible sums"
                + ("" if informative else " (uninformative: n >= 10^decimals)"),
                "consistent" if ks else "inconsistent",
                f"sums {ks[0]}..{ks[-1]} over {p.denominator_n}"
                if ks
                else f"no integer sum S gives S / {p.denominator_n} printing as {p.published}",
            )


def _counts_against_percentages(pub: dict, add) -> None:
    """A printed count must be one of the counts its percentage implies."""
    for count_id, pct_id in (
        ("pain.n", "pain.pct_of_population"),
        ("pain_risk.n", "pain_risk.pct_of_pain"),
    ):
        if count_id in pub and pct_id in pub:
            c, q = pub[count_id], pub[pct_id]
            ks = grim_counts(q.published, q.denominator_n, decimals=q.decimals)
            ok = int(c.published) in ks
            add(
                f"count {c.published} against {q.published}% of {q.denominator_n}",
                f"{c.figure}",
                "the printed count must be one of the counts the percentage implies",
                GRIM_REF,
                f"implied {ks}",
                "consistent" if ok else "inconsistent",
                f"100 x {c.published} / {q.denominator_n} = "
                f"{100 * int(c.published) / q.denominator_n:.4f}%",
            )


def _one_subgroup_two_denominators(pub: dict, add) -> None:
    """One count must fit both shares of the target subgroup."""
    if "target.pct_of_pain" in pub and "target.pct_of_population" in pub:
        a, b = pub["target.pct_of_pain"], pub["target.pct_of_population"]
        ka = set(grim_counts(a.published, a.denominator_n, decimals=a.decimals))
        kb = set(grim_counts(b.published, b.denominator_n, decimals=b.decimals))
        both = sorted(ka & kb)
        add(
            f"target subgroup: {a.published}% of {a.denominator_n} and {b.published}% of "
            f"{b.denominator_n}",
            "P9",
            "one count must fit both shares",
            GRIM_REF,
            f"counts {sorted(ka)} and {sorted(kb)}; common {both}",
            "consistent" if both else "inconsistent",
            f"{both[0]} / {a.denominator_n} = {100 * both[0] / a.denominator_n:.3f}%, "
            f"{both[0]} / {b.denominator_n} = {100 * both[0] / b.denominator_n:.3f}%"
            if both
            else "no common count",
        )


def _men_fit_among_men(pub: dict, add) -> None:
    """The men of the pain cohort fit among the population's men (the published counts and
    denominators read from the figures file, never literals)."""
    n_pop = _count(pub, "population.n")
    n_pain = _count(pub, "pain.n")
    if "pain.male_pct" in pub and "population.female_pct" in pub and n_pop and n_pain:
        mp, fp = pub["pain.male_pct"], pub["population.female_pct"]
        males_pain = grim_counts(mp.published, mp.denominator_n or n_pain, decimals=mp.decimals)
        female_all = grim_counts(fp.published, fp.denominator_n or n_pop, decimals=fp.decimals)
        ok = bool(males_pain and female_all and min(males_pain) <= n_pop - max(female_all))
        add(
            "men in the pain cohort fit among the population's men",
            "P4, P7",
            "implied men with pain <= implied men in the population",
            GRIM_REF,
            f"{males_pain} men with pain; {[n_pop - f for f in female_all]} men in all",
            "consistent" if ok else "inconsistent",
            "",
        )


@dataclass(frozen=True)
class _Ages:
    """What the SD checks share: the age range (printed, or 0 to AGE_SPAN), the smallest
    target subgroup, and whether at least that many are 75 or over."""

    lo: int
    hi: int
    ranged: bool
    range_words: str
    target_k: int | None
    elderly: tuple | None
    n_pop: int | None


def _ages(pub: dict) -> _Ages:
    """The age range, target subgroup and 75+ floor the SD checks read from ``pub``."""
    n_pop = _count(pub, "population.n")
    n_pain = _count(pub, "pain.n")
    target_k = None
    if "target.pct_of_pain" in pub:
        tp = pub["target.pct_of_pain"]
        ka = grim_counts(tp.published, tp.denominator_n or n_pain, decimals=tp.decimals)
        target_k = min(ka) if ka else None
    # the published age range, or the span of human ages when a paper prints none
    ranged = {"population.age_min", "population.age_max"} <= set(pub)
    lo, hi = (
        (int(pub["population.age_min"].published), int(pub["population.age_max"].published))
        if ranged
        else (0, AGE_SPAN)
    )
    range_words = "" if ranged else f" (no range printed: ages 0-{AGE_SPAN} assumed)"

    # the target subgroup is aged 75 or more (the paper's definition): where the printed
    # range reaches 75, at least that many ages are 75+; another paper's range may not
    elderly = (target_k, ELDERLY_AGE) if target_k and ELDERLY_AGE <= hi else None
    return _Ages(lo, hi, ranged, range_words, target_k, elderly, n_pop)


def _bounds_or_impossible(pub, add, a: _Ages, check, figures, m, **kw):
    """sd_bounds, or a row saying the mean itself is impossible (None returned): the
    audit goes on with its other checks."""
    lo, hi, range_words = a.lo, a.hi, a.range_words
    try:
        return sd_bounds(m.denominator_n, m.published, lo, hi, **kw)
    except AnalysisError as exc:
        add(
            check,
            figures,
            "integers in the age range with a mean that prints as the published one",
            GRIM_REF,
            f"no SD possible: {str(exc).removeprefix('SD bounds: ')}",
            "impossible",
            f"the mean {m.published} of {m.denominator_n} integer ages in {lo}-{hi} is "
            f"impossible (GRIM){range_words}, so no SD is",
        )
        return None


def _population_sd(pub: dict, add) -> None:
    """The population's SD of age against its possible range (SPRITE-style bounds)."""
    a = _ages(pub)
    lo, hi, ranged, range_words, elderly = a.lo, a.hi, a.ranged, a.range_words, a.elderly
    b = None
    if {"population.age_mean", "population.age_sd"} <= set(pub):
        m, s = pub["population.age_mean"], pub["population.age_sd"]
        b = _bounds_or_impossible(
            pub,
            add,
            a,
            f"SD {s.published} of the population's ages",
            "P2, P3, P9",
            m,
            require_extremes=ranged,
            at_least=elderly,
        )
    if b is not None:
        add(
            f"SD {s.published} of the population's ages",
            "P2, P3, P9",
            _sd_method(elderly[0] if elderly else None, True),
            SPRITE_REF,
            f"possible SD: {b.min_sd:.3f} to {b.max_sd:.3f}",
            "possible" if b.possible(s.published) else "impossible",
            f"n {b.n}, mean {m.published} (sum of ages {b.sum_range[0]}-{b.sum_range[1]}), range "
            f"{lo}-{hi}{range_words}: "
            f"smallest SD with ages {_ex(b.min_example)}; largest with {_ex(b.max_example)}",
        )


def _pain_sd(pub: dict, add) -> None:
    """The pain cohort's SD of age: its own bounds, the population's SD as a ceiling, and
    the readings of the printed ± as a standard error or a CI's half-width."""
    a = _ages(pub)
    lo, hi, range_words, elderly = a.lo, a.hi, a.range_words, a.elderly
    target_k, n_pop = a.target_k, a.n_pop
    b = None
    if {"pain.age_mean", "pain.age_sd"} <= set(pub):
        m, s = pub["pain.age_mean"], pub["pain.age_sd"]
        b = _bounds_or_impossible(
            pub,
            add,
            a,
            f"SD {s.published} of the pain cohort's ages",
            "P6, P3, P9",
            m,
            require_extremes=False,
            at_least=elderly,
        )
    if b is not None:
        whole = {"population.age_mean", "population.age_sd"} <= set(pub)
        ceiling = (
            subgroup_sd_ceiling(
                n_pop or pub["population.age_mean"].denominator_n,
                pub["population.age_mean"].published,
                pub["population.age_sd"].published,
                m.denominator_n,
                m.published,
            )
            if whole
            else math.inf
        )
        top = min(b.max_sd, ceiling)
        verdict = (
            "possible"
            if b.possible(s.published) and float(Fraction(s.published)) <= ceiling
            else "impossible"
        )
        add(
            f"SD {s.published} of the pain cohort's ages",
            "P6, P3, P9",
            _sd_method(elderly[0] if elderly else None, False),
            SPRITE_REF,
            f"possible SD: {b.min_sd:.3f} to {top:.3f}",
            verdict,
            f"n {b.n}, mean {m.published}, ages within the population's {lo}-{hi}{range_words}"
            + (f", and at least {target_k} aged 75+ (the target subgroup)" if elderly else "")
            + f": the smallest SD puts {_ex(b.min_example)}; "
            + (
                f"the population's SD {pub['population.age_sd'].published} leaves the pain "
                f"cohort an SD of at most {ceiling:.2f} (its sum of squares cannot exceed the "
                "population's)"
                if whole
                else "no population SD printed to bound it further"
            ),
        )
        n = m.denominator_n
        v = float(Fraction(s.published))

        z95, z99 = normal_quantile(0.975), normal_quantile(0.995)
        for reading, divisor in (
            ("a standard error of the mean", 1.0),
            ("the half-width of a 95% CI of the mean", z95),
            ("the half-width of a 99% CI of the mean", z99),
        ):
            implied = v * math.sqrt(n) / divisor
            ok = b.min_sd <= implied <= top
            add(
                f"reading ±{s.published} as {reading}",
                "P6",
                f"implied SD = {implied:.2f}",
                SPRITE_REF,
                f"implied SD {implied:.2f} against possible {b.min_sd:.2f}-{top:.2f}",
                "possible" if ok else "impossible",
                f"SD = {s.published} x sqrt({n})"
                + (f" / {divisor:.4f}" if divisor != 1 else "")
                + f" = {implied:.2f}",
            )


CHECKS = (
    _grim,
    _counts_against_percentages,
    _one_subgroup_two_denominators,
    _men_fit_among_men,
    _population_sd,
    _pain_sd,
)
"""The consistency checks of the published figures, in the order the audit lists them:
each ``check(published figures by id, add)`` adds one row per check it makes."""


def _count(pub: dict, fid: str) -> int | None:
    """A published count (``patients``) from the figures file, or None."""
    p = pub.get(fid)
    return int(Fraction(p.published)) if p is not None and p.unit == "patients" else None


def _sd_method(k, extremes):
    parts = ["exact min/max SD (n - 1 denominator) of integer ages with the printed n and mean"]
    parts.append("the range attained" if extremes else "ages within the population's range")
    if k:
        parts.append(f"at least {k} aged >= 75")
    return "; ".join(parts)


def _ex(counts: dict) -> str:
    items = [f"{c} x {v}" for v, c in counts.items()]
    return ", ".join(items[:6]) + (" ..." if len(items) > 6 else "")


# parameters that do not change a published point value
_NOT_DEFINITIONS = (
    "disclosure",
    "disclosure_threshold",
    "disclosure_rounding",
    "confidence_level",
    "ci_method",
    "monte_carlo_draws",
    "seed",
)


def is_reproduction(params, is_synthetic: bool) -> bool:
    """True when a run can reproduce the paper: the synthetic default data (built to match
    it) under the paper's definitions; any other run is a comparison with the paper."""

    mine = params.to_dict()
    return is_synthetic and all(
        list(mine[k]) == list(v) if isinstance(v, tuple) else mine[k] == v
        for k, v in DEFAULTS.items()
        if k not in _NOT_DEFINITIONS
    )


def reproduction_table(
    figures: list[dict] | None,
    published: list[Published] | None = None,
    *,
    comparison: bool = False,
) -> pd.DataFrame:
    """Each published figure, the recomputed value at the published precision, the
    difference and a verdict (reproduced / differs / not computable). With
    ``comparison`` (data other than the paper's, or other definitions) the verdicts say
    "same as the paper" / "different from the paper": a difference is a finding about the
    data, not a failure to reproduce."""
    pub = published or load_published()
    by_id = {f["id"]: f for f in (figures or [])}
    audit = {}
    try:
        ca = consistency_audit(pub)
        for _, r in ca.iterrows():
            if r["check"].startswith("SD ") and r["verdict"] == "impossible":
                audit["pain.age_sd" if "pain" in r["check"] else "population.age_sd"] = r["result"]
    except AnalysisError:
        pass
    rows = []
    for p in pub:
        f = by_id.get(p.id)
        row = {
            "id": p.id,
            "figure": p.figure,
            "description": p.description,
            "published": p.published,
            "unit": p.unit,
        }
        if f is None or f.get("value") is None:
            row.update(
                recomputed="",
                difference="",
                verdict="not computable"
                + (
                    " (an assumption, a parameter of the analysis)"
                    if p.id == "benefit.fraction"
                    else ""
                ),
            )
        else:
            val = float(f["value"])
            rounded = round(val, p.decimals) if p.decimals else float(round(val))
            text = f"{rounded:.{p.decimals}f}"
            diff = Fraction(text) - p.value
            verdict = "reproduced" if diff == 0 else "differs"
            if comparison:
                verdict = "same as the paper" if diff == 0 else "different from the paper"
            elif verdict == "differs" and p.id in audit:
                verdict = f"differs (the published value is impossible; {audit[p.id]})"
            row.update(
                recomputed=text, difference=f"{float(diff):+.{p.decimals}f}", verdict=verdict
            )
        rows.append(row)
    return pd.DataFrame(rows)


def narrative(checks: pd.DataFrame, repro: pd.DataFrame) -> str:
    """A short plain-language summary of the audit (Markdown); every number in it comes
    from the audited figures and the checks, so it reads right on any paper's file."""
    n_pub = int((repro["verdict"] != "").sum())
    ok = int((repro["verdict"] == "reproduced").sum())
    lines = [f"**{ok} of {n_pub} published figures reproduced** at the published precision."]
    for _, r in repro.iterrows():
        if r["verdict"] != "reproduced":
            lines.append(
                f"- {r['figure']} `{r['id']}` (published {r['published']}): {r['verdict']}"
                + (f"; recomputed {r['recomputed']}." if r["recomputed"] else ".")
            )
    published = dict(zip(repro["id"], repro["published"], strict=True))
    recomputed = dict(zip(repro["id"], repro["verdict"], strict=True))
    bad = checks[checks["verdict"].isin(["impossible", "inconsistent"])]
    if len(bad):
        lines.append("")
        lines.append("**Published figures that cannot be right as printed:**")
        for _, r in bad.iterrows():
            lines.append(f"- {r['check']} ({r['figures']}): {r['verdict']}. {r['arithmetic']}.")
        readings = checks[checks["check"].str.startswith("reading ±")]
        if len(readings):
            sd, mean = published.get("pain.age_sd", "?"), published.get("pain.age_mean", "?")
            fits = readings["verdict"] == "possible"
            possible = [c.split(" as ", 1)[1] for c in readings.loc[fits, "check"]]
            impossible = [c.split(" as ", 1)[1] for c in readings.loc[~fits, "check"]]
            same = (
                f" These data reproduce the pain cohort's mean age of {mean}."
                if recomputed.get("pain.age_mean") == "reproduced"
                else ""
            )
            lines.append("")
            if possible:
                lines.append(
                    f"The pain cohort's '± {sd}' is not an SD"
                    + "".join(f", nor {r}" for r in impossible)
                    + "; it is consistent only with "
                    + " or ".join(possible)
                    + " ("
                    + "; ".join(readings.loc[fits, "method"])
                    + ")."
                    + same
                )
            else:
                lines.append(
                    f"No reading of the pain cohort's '± {sd}' tried here (SD, "
                    + ", ".join(impossible)
                    + ") is arithmetically possible."
                    + same
                )
    good = checks[checks["verdict"].isin(["consistent", "possible"])]
    if len(good):
        lines.append("")
        lines.append(
            f"The other {len(good)} check(s) pass: "
            + "; ".join(str(c) for c in good["check"])
            + "."
        )
    return "\n".join(lines)


@dataclass
class AuditReport(Summary):
    """The audit of the published figures as one result: the verdict of each check and a
    count of verdicts; prints as a table (notebook) or aligned text (terminal)."""

    checks: pd.DataFrame
    summary_title = "Audit of the published figures (from the printed numbers only)"
    summary_headers = ("check", "figures", "result", "verdict")

    def summary_rows(self):
        return [
            (str(r["check"]), str(r["figures"]), str(r["result"]), str(r["verdict"]))
            for _, r in self.checks.iterrows()
        ]

    def summary_notes(self):
        counts = self.checks["verdict"].value_counts()
        return ["Verdicts: " + ", ".join(f"{v} {n}" for v, n in counts.items()) + "."]


def audit_report(checks: pd.DataFrame) -> AuditReport:
    """``checks`` (from :func:`consistency_audit`, as released) as a printable result."""
    return AuditReport(checks)
