"""Statistical disclosure control of aggregate outputs: one step for every table.

Rules (parameter ``disclosure``):

* ``opensafely``: counts of 7 or fewer are redacted, the others rounded to the nearest 5;
  percentages are recomputed from the rounded counts (OpenSAFELY output checking rules);
* ``ohdsi``: counts below 5 are suppressed (OHDSI minimum cell count);
* ``datashield``: counts below 3 are suppressed (DataSHIELD default filter);
* ``off``: nothing suppressed; ``auto``: ``off`` for data marked synthetic, ``opensafely``
  for any other data.

``disclosure_threshold`` and ``disclosure_rounding`` may make a rule stricter; a setting
weaker than the rule's own (a lower threshold, finer rounding) makes the outputs unfit for
release: they are stamped NOT FOR RELEASE like ``off`` (:func:`release_status`).

Principle: every released statistic is a function of released counts, or is withheld.
Counts below the threshold are withheld with everything that derives from them (a
group's mean, SD, interval, SMD), the others rounded; percentages are recomputed from
released counts over released totals and proportion intervals from the same released
counts (the ``ci_method`` of the parameters; so an interval never tells more than the
counts beside it); odds ratios are fitted on the released (rounded) cell counts; means
and quantiles are rounded to one decimal, extremes and the intervals of means withheld;
where one withheld cell of a partition could be recovered by subtraction from a
published total, the next smallest is withheld too; a count within the threshold of a
released count that contains it (60 women of 62 patients; 37 recurrent of a pain cohort
of 39) is withheld, since the difference is a small group (:func:`nested_withheld`; two
equal counts, an empty difference, are not withheld for that); a row that exists only where
patients exist (an age, a code, a combination) is dropped when its counts are withheld,
and the number dropped is recorded. What each table holds is declared once in
:mod:`analysis.outputs.registry`; :func:`protect` refuses any other table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

RELEASE_SYNTHETIC = "synthetic data"
TOP_AGE_FLOOR = 90  # under a rule, ages of 90 and over count as 90 (top-coded)


def refuse_ages_above_top(params, rule, source: str = "parameters") -> None:
    """Under a rule ages of 90 and over count as 90 whatever the parameters: an elderly age
    or an age-band edge above 90 would need the exact ages above it (the oldest patients
    are the easiest to identify), so it is refused by name."""
    if rule is None:
        return
    bad = [f"elderly_age {params.elderly_age}"] if params.elderly_age > TOP_AGE_FLOOR else []
    bad += [f"age_band_edges {e}" for e in params.age_band_edges if e > TOP_AGE_FLOOR]
    if bad:
        from analysis.errors import AnalysisError

        raise AnalysisError(
            f"{source}: {', '.join(bad)} is above {TOP_AGE_FLOOR}; under the {rule.name} rule "
            f"ages of {TOP_AGE_FLOOR} and over count as {TOP_AGE_FLOOR} (top-coded), so no "
            f"threshold above it can be used. Choose {TOP_AGE_FLOOR} or less. Nothing was "
            "computed."
        )


RELEASE_CONTROLLED = "aggregates under disclosure control"
NOT_FOR_RELEASE = "NOT FOR RELEASE"


@dataclass(frozen=True)
class Rule:
    name: str
    threshold: int  # counts below this are suppressed
    round_to: int = 1
    for_release: bool = True  # False when weaker than the preset's own settings

    def suppressed(self, count) -> bool:
        """Whether ``count`` is withheld: its released (rounded) value would be below the
        threshold, zero included (a zero tells that nobody in the group has the attribute).
        Deciding on the rounded value makes the decision a function of what is released:
        two runs whose thresholds differ then tell nothing beyond the rounded count."""
        return (
            count is not None
            and not (isinstance(count, float) and math.isnan(count))
            and self.round(count) < self.threshold
        )

    def describe(self) -> str:
        text = f"{self.name} rule: counts below {self.threshold} withheld"
        text += f", others rounded to the nearest {self.round_to}" if self.round_to > 1 else ""
        return text + ("" if self.for_release else " (weaker than the rule's own: NOT FOR RELEASE)")

    def round(self, count):
        if count is None or self.round_to <= 1:
            return count
        return int(self.round_to * math.floor(count / self.round_to + 0.5))

    def release(self, count):
        """The released count: None when withheld, else rounded."""
        if count is None or (isinstance(count, float) and math.isnan(count)):
            return None
        return None if self.suppressed(count) else self.round(count)


RULES = {
    "opensafely": Rule("opensafely", threshold=8, round_to=5),
    "ohdsi": Rule("ohdsi", threshold=5),
    "datashield": Rule("datashield", threshold=3),
}


def resolve(rule_name, is_synthetic: bool) -> Rule | None:
    """The rule in force: ``auto`` means off for synthetic data, OpenSAFELY otherwise.

    ``rule_name`` may also be a parameter set, whose ``disclosure_threshold`` and
    ``disclosure_rounding`` (when not 0) replace the preset's; a replacement weaker than
    the preset's own gives a rule with ``for_release`` False."""
    threshold = rounding = 0
    if not isinstance(rule_name, str):  # a Params
        threshold, rounding = rule_name.disclosure_threshold, rule_name.disclosure_rounding
        rule_name = rule_name.disclosure
    if rule_name == "auto":
        rule_name = "off" if is_synthetic else "opensafely"
    rule = RULES.get(rule_name)
    if rule is not None and (threshold or rounding):
        t, r = threshold or rule.threshold, rounding or rule.round_to
        rule = Rule(
            f"{rule.name} (threshold {t}, rounding {r})",
            threshold=t,
            round_to=r,
            for_release=t >= rule.threshold and r >= rule.round_to and (r % rule.round_to == 0),
        )
    return rule


def release_status(params, is_synthetic: bool) -> str:
    """``synthetic data``, ``aggregates under disclosure control`` or ``NOT FOR RELEASE``
    (data not marked synthetic with the rule off or weakened)."""
    if is_synthetic:
        return RELEASE_SYNTHETIC
    rule = resolve(params, is_synthetic)
    return RELEASE_CONTROLLED if rule is not None and rule.for_release else NOT_FOR_RELEASE


# ----------------------------------------------------------------------------- the one step
@dataclass
class Protected:
    table: object  # the released DataFrame
    withheld_cells: int
    dropped_rows: int
    dropped: object = None  # the rows left out (unprotected), for the disclosure audit
    reasons: dict = field(default_factory=dict)
    """Column -> row label -> why that count is withheld (:data:`REASONS`); for the tables
    the generic step protects (a table's own protector says its reasons in its note)."""


REASONS = {
    "small": "small count",
    "rest": "the rest of its denominator is small",
    "complement": "complement of a withheld cell in its partition",
    "records": "with the patient count it goes with",
    "audit": "the audit (it would follow from other released numbers)",
    "derived": "a released count would reveal a small group from it",
}
"""Why a count is withheld, in words (``disclosure.json`` counts them per table)."""
REASON_WORDS = {
    REASONS["small"]: "small",
    REASONS["rest"]: "complement",
    REASONS["complement"]: "complement",
    REASONS["audit"]: "audit",
    REASONS["derived"]: "derived",
}
"""The reason a shown table gives next to "withheld" (none for records, which go with
their patient count)."""


def protect(df, name: str, rule: Rule | None, params=None, force=None) -> Protected:
    """The table ``name`` as released under ``rule`` (see the module docstring). The table
    must be declared and match its declaration, under every rule (``rule`` None included:
    a table that would be refused on real data is refused on synthetic data too)."""
    from analysis.outputs.registry import spec_for

    spec = spec_for(name)
    spec.check(df)
    if rule is None:
        return Protected(df.copy(), 0, 0)
    t = df.copy()
    if spec.top_code:
        t = _top_code(t, spec)
    if spec.protector is not None:
        before = t.copy()
        t, n = spec.protector(t, rule, params)
        t["disclosure"] = rule.name
        return Protected(t, n, 0, reasons=_reasons_by_value(before, t, spec, rule))
    import numpy as np

    for col in spec.withhold:
        t[col] = np.nan
    original = t.copy()
    force = force or {}  # column -> rows the disclosure audit withholds besides
    reasons: dict = {}
    masks = _suppression_masks(t, spec, rule, force, reasons)
    withheld = 0
    for col, mask in masks.items():
        withheld += int((mask & original[col].notna()).sum())
        t[col] = t[col].astype(float)
        t.loc[mask, col] = np.nan
        deps = spec.derived.get(col)
        if deps is None:
            deps = [c for c in t.columns if c not in spec.counts and c not in spec.keys]
        for d in deps:
            if d in t.columns and d not in spec.counts:
                if t[d].dtype != object:
                    t[d] = t[d].astype(float)
                t.loc[mask, d] = np.nan
    for col in spec.counts:
        t[col] = t[col].apply(lambda v: v if v != v else float(rule.round(v)))
    for pct, (num, den) in spec.pct.items():
        if den == "column_total":
            total = rule.release(float(original[num].sum()))
            t[pct] = 100 * t[num] / total if total else np.nan
        elif den == "from_pct":
            totals = (100 * original[num].astype(float) / original[pct].astype(float)).round()
            rel = totals.apply(
                lambda v: np.nan if v != v or not np.isfinite(v) else float(rule.round(v))
            )
            t[pct] = 100 * t[num] / rel
        else:
            t[pct] = 100 * t[num] / t[den]
    for lo, hi, num, den in spec.ci:
        t[lo], t[hi] = _proportion_intervals(t[num], t[den], params)
    for col, digits in spec.round_to_decimals.items():
        t[col] = t[col].astype(float).round(digits)
    for col, rows in force.items():  # statistics (a mean, an SD) the audit withholds
        if col not in spec.counts and col in t.columns:
            t[col] = t[col].astype(float)
            t.loc[sorted(rows), col] = np.nan
    dropped = 0
    if spec.rows_exist_only_with_patients and spec.counts:
        gone = t[list(spec.counts)].isna().all(axis=1) & original[list(spec.counts)].notna().any(
            axis=1
        )
        dropped = int(gone.sum())
        left_out = df.loc[gone[gone].index.intersection(df.index)]
        t = t[~gone]
    else:
        left_out = None
    if spec.counts:
        t["disclosure"] = rule.name
    reasons = {
        col: {i: REASONS[w] for i, w in rows.items() if original.at[i, col] == original.at[i, col]}
        for col, rows in reasons.items()
    }
    return Protected(t, withheld, dropped, left_out, reasons)


def nested_withheld(counts: dict, parents: dict, rule: Rule) -> set:
    """The groups to withhold among nested groups of patients: those below the threshold,
    and those within the threshold of a released group that contains them, since their
    difference (1 to threshold - 1 patients) would follow by subtraction. ``counts``:
    group -> patients, containing groups first; ``parents``: group -> the groups that
    contain it (transitively closed here). The contained group is the one withheld, so
    the larger, more basic count stays. (Two equal counts tell that a group is empty, not
    who is in it; they are not withheld for that.)"""

    def ancestors(k, seen=()):
        for a in parents.get(k, ()):
            if a not in seen:
                seen = (*seen, a)
                seen = ancestors(a, seen)
        return seen

    out = {k for k, v in counts.items() if rule.release(v) is None}
    for k, v in counts.items():
        if k in out:
            continue
        if any(
            a not in out and 0 < counts[a] - v and rule.suppressed(counts[a] - v)
            for a in ancestors(k)
        ):
            out.add(k)
    return out


def nested_withheld_by_masks(counts, masks, rule: Rule, keep=(), withheld=()) -> set:
    """The same rule as :func:`nested_withheld` for groups given by their members: group
    ``i`` has ``counts[i]`` patients, the cells of the profile cube where ``masks[i]`` is
    true (``i`` lies within ``j`` when no cell of ``i`` is outside ``j``). A group is
    withheld below the threshold, or when it lies within, or contains, a released group
    that differs from it by fewer patients than the threshold (a sensitivity grid's cells
    one threshold apart). The groups of ``withheld`` are withheld (as they are elsewhere);
    those of ``keep`` (released elsewhere too) are decided first, then the others from the
    largest. Returns the indices withheld."""
    import numpy as np

    def nested(i, j):
        small, large = (i, j) if counts[i] <= counts[j] else (j, i)
        return not np.any(masks[small] & ~masks[large])

    rest = sorted((i for i in range(len(counts)) if i not in keep), key=lambda i: -counts[i])
    out = {i for i in range(len(counts)) if rule.release(counts[i]) is None} | set(withheld)
    released: list[int] = []
    for i in [*keep, *rest]:
        if i in out:
            continue
        if any(
            counts[i] != counts[j] and rule.suppressed(abs(counts[i] - counts[j])) and nested(i, j)
            for j in released
        ):
            out.add(i)
        else:
            released.append(i)
    return out


def _reasons_by_value(before, after, spec, rule) -> dict:
    """Why each count a table's own protector withheld is withheld, from its value: a small
    count, or one a released count would reveal (a complement, a nested group)."""
    out: dict = {}
    if len(before) != len(after):
        return out
    for col in spec.counts:
        if col not in before.columns or col not in after.columns:
            continue
        for i, (b, a) in enumerate(zip(before[col], after[col], strict=True)):
            if b == b and b is not None and a != a:
                label = after.index[i]
                out.setdefault(col, {})[label] = (
                    REASONS["small"] if rule.suppressed(float(b)) else REASONS["derived"]
                )
    return out


def _suppression_masks(t, spec, rule, force=None, reasons=None) -> dict:
    """Per count column, the rows withheld: below the threshold (counts of records follow
    the patient count that governs them), plus complementary cells of partitions."""
    order = sorted(spec.counts, key=lambda c: spec.counts[c].startswith("records:"))
    masks = {}
    why = {} if reasons is None else reasons
    for col in order:
        unit = spec.counts[col]
        vals = t[col].astype(float)
        mask = vals.apply(rule.suppressed) & vals.notna()
        because = {i: "small" for i in t.index[mask]}
        forced = (force or {}).get(col, ())
        if forced:
            extra = t.index.isin(sorted(forced)) & ~mask
            because.update({i: "audit" for i in t.index[extra]})
            mask |= t.index.isin(sorted(forced))
        for num, den in spec.pct.values():
            if num == col and unit == "patients" and spec.counts.get(den) == "patients":
                # those of the denominator without the attribute follow by subtraction
                rest = t[den].astype(float) - vals
                extra = rest.apply(lambda v: v == v and v > 0 and rule.suppressed(v)) & ~mask
                because.update({i: "rest" for i in t.index[extra]})
                mask |= extra
        if unit.startswith("records:"):
            extra = masks[unit[8:]] & ~mask
            because.update({i: "records" for i in t.index[extra]})
            mask = mask | masks[unit[8:]]
        else:
            for g in _partitions(t, spec):
                sub = mask[g]
                visible = vals[g][~sub & vals[g].notna()]
                if sub.sum() == 1 and len(visible) >= 1:
                    mask[visible.idxmin()] = True  # complementary suppression
                    because[visible.idxmin()] = "complement"
        masks[col] = mask
        why[col] = because
    return masks


def _partitions(t, spec):
    part = spec.partition
    if part is True:
        return [t.index]
    if part:
        key, prefixes = part
        return [t.index[t[key].astype(str).str.startswith(pre)] for pre in prefixes]
    return []


def _top_code(t, spec):
    """Merge the rows at or above the top-code value of a numeric key into one row."""
    import pandas as pd

    col, cap, label = spec.top_code
    vals = pd.to_numeric(t[col], errors="coerce")
    top = vals >= cap
    if not top.any():
        t[col] = t[col].astype(object)
        return t
    other_keys = [k for k in spec.keys if k != col and k in t.columns and k not in ("age_group",)]
    merged = (
        t[top].groupby(other_keys, as_index=False)[list(spec.counts)].sum()
        if other_keys
        else t[top][list(spec.counts)].sum().to_frame().T
    )
    merged[col] = label
    if "age_group" in t.columns:
        merged["age_group"] = label
    keep = t[~top].copy()
    keep[col] = keep[col].astype(object)
    out = pd.concat([keep, merged[t.columns]], ignore_index=True)
    return out


def _proportion_intervals(num, den, params):
    """Intervals (percent) recomputed from released counts; withheld where either is."""
    import numpy as np

    from analysis.estimates import proportion_ci

    if params is None:
        return np.full(len(num), np.nan), np.full(len(num), np.nan)
    lows, highs = [], []
    for x, n in zip(num, den, strict=True):
        if x != x or n != n or not n or x > n:
            lows.append(np.nan)
            highs.append(np.nan)
            continue
        lo, hi = proportion_ci(int(x), int(n), params.confidence_level, params.ci_method)
        lows.append(100 * lo)
        highs.append(100 * hi)
    return np.array(lows), np.array(highs)


# ----------------------------------------------------------------------------- protectors
def protect_table_one(t, rule: Rule, params):
    """Table 1 under ``rule``: a group whose size is withheld has every statistic withheld
    (its mean age too); a mean and SD that rest on fewer patients with a non-zero value (or
    with zero) than the threshold are withheld (``attrs['support']``; withheld when the
    table does not say); each row's two counts partition a total published elsewhere, so a
    withheld count takes the other with it; shares, intervals and SMDs are recomputed from
    released counts and rounded means (SMD to 2 decimals, means and SDs to 1)."""
    import numpy as np

    from analysis.statistics import smd_binary, smd_continuous

    t = t.copy().reset_index(drop=True)
    for c in t.columns:
        if c not in ("variable", "kind"):
            t[c] = t[c].astype(float)
    orig = t.copy()
    withheld = 0
    groups = ("pain", "rest")
    size = {g: rule.release(orig.at[0, f"{g}_n"]) for g in groups}
    if sum(size[g] is None for g in groups) == 1:  # the other group = population - this one
        size = dict.fromkeys(groups)
    for i in t.index:
        kind = t.at[i, "kind"]
        if kind in ("count", "binary"):
            rel = {g: rule.release(orig.at[i, f"{g}_n"]) for g in groups}
            if kind == "binary":  # those of the group without it follow by subtraction
                for g in groups:
                    rest = orig.at[0, f"{g}_n"] - orig.at[i, f"{g}_n"]
                    if rest == rest and rest > 0 and rule.suppressed(rest):
                        rel[g] = None
            if sum(rel[g] is None for g in groups) == 1:
                rel = dict.fromkeys(groups)
            for g in groups:
                if size[g] is None:
                    rel[g] = None
                withheld += int(rel[g] is None and orig.at[i, f"{g}_n"] == orig.at[i, f"{g}_n"])
                t.at[i, f"{g}_n"] = np.nan if rel[g] is None else rel[g]
                if kind == "binary":
                    ok = rel[g] is not None and size[g]
                    t.at[i, f"{g}_pct"] = 100 * rel[g] / size[g] if ok else np.nan
                    lo, hi = _proportion_intervals(
                        [rel[g] if ok else np.nan], [size[g] or np.nan], params
                    )
                    t.at[i, f"{g}_ci_low"], t.at[i, f"{g}_ci_high"] = lo[0], hi[0]
            p = [t.at[i, f"{g}_pct"] for g in groups]
            t.at[i, "smd"] = (
                round(smd_binary(p[0] / 100, p[1] / 100), 2)
                if kind == "binary" and all(v == v for v in p)
                else np.nan
            )
        elif kind == "continuous":
            support = t.attrs.get("support", {}).get(t.at[i, "variable"])
            for g in groups:
                # withheld with its group, or when it rests on few patients with (or without) a
                # value
                few = support is None or any(rule.suppressed(k) for k in support[g])
                for s in ("mean", "sd"):
                    v = orig.at[i, f"{g}_{s}"]
                    t.at[i, f"{g}_{s}"] = np.nan if size[g] is None or few else round(v, 1)
                t.at[i, f"{g}_ci_low"] = t.at[i, f"{g}_ci_high"] = np.nan  # intervals of means
            m = [t.at[i, f"{g}_mean"] for g in groups] + [t.at[i, f"{g}_sd"] for g in groups]
            t.at[i, "smd"] = (
                round(smd_continuous(m[0], m[2], m[1], m[3]), 2)
                if all(v == v for v in m)
                else np.nan
            )
    return t, withheld


def protect_regression(table, rule: Rule, params):
    """Odds ratios under ``rule``: the model is refitted on the released (rounded) cell
    counts (``table.attrs['cells']``: events and non-events per age band x sex), so no
    estimate, interval or p-value tells more than rounded counts. It is released only when
    every cell is releasable (a withheld cell's rounded value, 0 or 5, would otherwise show
    through the estimates); then a term is withheld when its group or its reference group
    has fewer events or non-events than the threshold. Without cells every term is withheld."""
    import numpy as np

    t = table.copy()
    cells = table.attrs.get("cells")
    if cells is None or params is None:
        t.loc[:, ["odds_ratio", "ci_low", "ci_high", "p_value"]] = np.nan
        return t, len(t)
    from analysis.statistics import fit_grouped_logit

    if any(rule.suppressed(int(v)) for c in ("events", "non_events") for v in cells[c]):
        # a fit on rounded cells would still tell which side of the threshold a withheld
        # cell lies (0 or 5): the model is released only when every cell is releasable
        t.loc[:, ["odds_ratio", "ci_low", "ci_high", "p_value"]] = np.nan
        return t, len(t)
    released = cells.copy()
    for c in ("events", "non_events"):
        released[c] = released[c].apply(rule.round)
    refit = fit_grouped_logit(released, params).set_index("term")
    n = 0
    for i, term in t["term"].items():
        if t.at[i, "odds_ratio"] != t.at[i, "odds_ratio"]:  # not estimable: nothing to withhold
            continue
        if term.startswith("age "):
            band, ref = term[4:].split(" vs ")
            groups = [cells[cells["band"] == band], cells[cells["band"] == ref]]
        else:
            groups = [cells[cells["sex"] == s_] for s_ in ("M", "F")]
        bad = (
            any(
                rule.suppressed(int(g["events"].sum()))
                or rule.suppressed(int(g["non_events"].sum()))
                for g in groups
            )
            or term not in refit.index
        )
        cols = ["odds_ratio", "ci_low", "ci_high", "p_value"]
        if bad:
            n += 1
            t.loc[i, cols] = np.nan
        else:
            r = refit.loc[term]
            t.loc[i, cols] = [
                round(float(r["odds_ratio"]), 2),
                round(float(r["ci_low"]), 2),
                round(float(r["ci_high"]), 2),
                float(f"{float(r['p_value']):.2g}"),
            ]
            t.at[i, "method"] = r["method"]
    return t, n


def protect_attrition(table, rule: Rule, params=None):
    """Attrition steps with counts withheld or rounded and shares recomputed from them;
    a withheld step hides the steps drawn from it too, and so does a step within the
    threshold of the step it is drawn from (the population: the database's count is
    withheld instead); an expected (non-whole) count is recomputed from its released
    previous step (target x benefit fraction)."""
    t = table.copy()
    t["n"] = t["n"].astype(float)
    orig = dict(zip(t["step"], t["n"], strict=True))
    hidden: set[str] = set()
    withheld = 0
    released: dict[str, float] = {}
    database_close = False
    for i in t.index:
        n, step, prev = t.at[i, "n"], t.at[i, "step"], t.at[i, "previous_step"]
        # a step within the threshold of the step it is drawn from: the difference would
        # follow by subtraction (for the population, the database's count goes instead)
        close = (
            n == n
            and float(n).is_integer()
            and prev in released
            and 0 < orig[prev] - n
            and rule.suppressed(orig[prev] - n)
        )
        if close and step == "all_patients":
            database_close, close = True, False
        # the population is not hidden with the database: the database's count is the one
        # withheld to keep their difference (the patients left out) from following
        drawn_from_hidden = prev in hidden and not (prev == "database" and step == "all_patients")
        if n != n or drawn_from_hidden or close or (float(n).is_integer() and rule.suppressed(n)):
            hidden.add(step)
            withheld += int(n == n)
            t.loc[i, ["n", "pct_of_previous", "pct_of_all"]] = math.nan
            continue
        if float(n).is_integer():
            released[step] = float(rule.round(n))
        else:  # an expectation drawn from its previous step
            released[step] = released[prev] * n / orig[prev] if orig[prev] else math.nan
        t.at[i, "n"] = released[step]
    # the database partitions into the population and the reasons for leaving patients
    # out: one withheld reason would follow by subtraction, so the next smallest goes too
    parts = [i for i in t.index if str(t.at[i, "step"]).startswith("excluded_")]
    gone = [i for i in parts if t.at[i, "step"] in hidden]
    shown = [i for i in parts if t.at[i, "step"] not in hidden]
    if len(gone) == 1 and shown:
        j = min(shown, key=lambda i: released[t.at[i, "step"]])
        hidden.add(t.at[j, "step"])
        withheld += 1
        t.loc[j, ["n", "pct_of_previous", "pct_of_all"]] = math.nan
    if database_close:
        released.pop("database", None)
        j = t.index[t["step"] == "database"][0]
        withheld += 1
        t.loc[j, ["n", "pct_of_previous", "pct_of_all"]] = math.nan
    n_all = released.get("all_patients")
    for i in t.index:
        step, prev = t.at[i, "step"], t.at[i, "previous_step"]
        if step == "database" and database_close:
            continue
        if step in hidden:
            continue
        n = released[step]
        t.at[i, "pct_of_previous"] = (
            (100 * n / released[prev] if released.get(prev) else math.nan) if prev else 100.0
        )
        outside = step == "database" or str(step).startswith("excluded_")
        t.at[i, "pct_of_all"] = math.nan if outside else (100 * n / n_all if n_all else math.nan)
    return t, withheld
