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

from analysis.estimates import proportion_ci
from analysis.outputs.registry import spec_for
from analysis.rules import (  # noqa: F401  (re-exported: the rules' first home)
    NOT_FOR_RELEASE,
    RELEASE_CONTROLLED,
    RELEASE_SYNTHETIC,
    RULES,
    TOP_AGE_FLOOR,
    Rule,
    nested_withheld,
    nested_withheld_by_masks,
    refuse_ages_above_top,
    release_status,
    resolve,
)
from analysis.statistics import fit_grouped_logit, smd_binary, smd_continuous


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
