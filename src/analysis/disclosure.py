"""Statistical disclosure control of aggregate outputs.

Rules (parameter ``disclosure``):

* ``opensafely``: counts of 7 or fewer are redacted, the others rounded to the nearest 5;
  percentages are recomputed from the rounded counts (OpenSAFELY output checking rules);
* ``ohdsi``: counts below 5 are suppressed (OHDSI minimum cell count);
* ``datashield``: counts below 3 are suppressed (DataSHIELD default filter);
* ``off``: nothing suppressed; ``auto``: ``off`` for data marked synthetic, ``opensafely``
  for any other data.

A statistic of a group whose count is suppressed (its mean, SD, interval) is suppressed
with it; means and quantiles are rounded to one decimal (an exact mean of integer ages
reveals the group's size); where one withheld cell of a partition could be recovered by
subtraction from a published total, the next smallest is withheld too. The figures
summary (``Study.figures``), the attrition, the eligibility estimate and the sensitivity
grid are computed from released counts; every notebook table passes ``protect_table``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    name: str
    threshold: int  # counts below this are suppressed
    round_to: int = 1

    def suppressed(self, count) -> bool:
        """Below the threshold, zero included (a zero tells that nobody in the group has
        the attribute, which is itself disclosive)."""
        return count is not None and not (isinstance(count, float) and math.isnan(count)) \
            and count < self.threshold

    def describe(self) -> str:
        text = f"{self.name} rule: counts below {self.threshold} withheld"
        return text + (f", others rounded to the nearest {self.round_to}" if self.round_to > 1 else "")

    def round(self, count):
        if count is None or self.round_to <= 1:
            return count
        return int(self.round_to * math.floor(count / self.round_to + 0.5))


RULES = {
    "opensafely": Rule("opensafely", threshold=8, round_to=5),
    "ohdsi": Rule("ohdsi", threshold=5),
    "datashield": Rule("datashield", threshold=3),
}


def resolve(rule_name, is_synthetic: bool) -> Rule | None:
    """The rule in force: ``auto`` means off for synthetic data, OpenSAFELY otherwise.

    ``rule_name`` may also be a parameter set, whose ``disclosure_threshold`` and
    ``disclosure_rounding`` (when not 0) replace the preset's."""
    threshold = rounding = 0
    if not isinstance(rule_name, str):  # a Params
        threshold, rounding = rule_name.disclosure_threshold, rule_name.disclosure_rounding
        rule_name = rule_name.disclosure
    if rule_name == "auto":
        rule_name = "off" if is_synthetic else "opensafely"
    rule = RULES.get(rule_name)
    if rule is not None and (threshold or rounding):
        rule = Rule(f"{rule.name} (threshold {threshold or rule.threshold}, rounding {rounding or rule.round_to})",
                    threshold=threshold or rule.threshold, round_to=rounding or rule.round_to)
    return rule


def apply_to_figures(figures: list[dict], rule: Rule | None) -> list[dict]:
    """Suppress or round the counts of the figures summary under ``rule``.

    A figure is suppressed when its own count, its numerator, or the size of the group it
    describes (``denominator`` of a mean or SD) is below the threshold; with rounding,
    counts are rounded and percentages recomputed from the rounded counts (intervals,
    which cannot be recomputed from rounded counts, are withheld)."""
    if rule is None:
        return figures
    out = []
    for f in figures:
        g = dict(f)
        if g["id"].endswith(("age_min", "age_max")):  # extremes identify single patients
            g.update(value=None, suppressed=True, disclosure=f"{rule.name}: an extreme value")
            out.append(g)
            continue
        is_count = g["id"].endswith(".n") and "numerator" not in g
        counts = [g["value"]] if is_count else []
        counts += [g[k] for k in ("numerator", "denominator") if isinstance(g.get(k), int)]
        if any(rule.suppressed(c) for c in counts):
            g.update(value=None, suppressed=True,
                     disclosure=f"{rule.name}: a count below {rule.threshold}")
            for k in ("numerator", "ci_low", "ci_high"):
                if k in g:
                    g[k] = None
        elif rule.round_to > 1:
            if is_count and isinstance(g["value"], int):
                g["value"] = rule.round(g["value"])
            if "numerator" in g and isinstance(g.get("denominator"), int):
                num, den = rule.round(g["numerator"]), rule.round(g["denominator"])
                g.update(numerator=num, denominator=den,
                         value=100.0 * num / den if den else None, ci_low=None, ci_high=None)
            g["disclosure"] = f"{rule.name}: counts rounded to the nearest {rule.round_to}"
        out.append(g)
    return out


def apply_to_attrition(table, rule: Rule | None):
    """Attrition steps with counts suppressed or rounded, percentages recomputed; a step
    below the threshold hides the steps drawn from it too (they could be derived)."""
    if rule is None:
        return table
    t = table.copy()
    hidden: set[str] = set()
    for i in t.index:
        n, step, prev = t.at[i, "n"], t.at[i, "step"], t.at[i, "previous_step"]
        if prev in hidden or rule.suppressed(n):
            hidden.add(step)
            t.loc[i, ["n", "pct_of_previous", "pct_of_all"]] = math.nan
        elif float(n).is_integer():
            t.at[i, "n"] = rule.round(n)
    if rule.round_to > 1:
        by_step = dict(zip(t["step"], t["n"], strict=True))
        n_all = by_step.get("all_patients")
        for i in t.index:
            n, prev = t.at[i, "n"], t.at[i, "previous_step"]
            if not math.isnan(n):
                t.at[i, "pct_of_previous"] = 100 * n / by_step[prev] if prev else 100.0
                t.at[i, "pct_of_all"] = 100 * n / n_all
    t["disclosure"] = rule.name
    return t


# ----------------------------------------------------------------------------- tables
# What each saved table holds: its count columns, the columns that derive from a count
# (suppressed with it), percentage columns to recompute from rounded counts, interval
# columns (withheld once counts are rounded), and whether the rows of a count column
# partition a total published elsewhere (then one suppressed cell alone could be
# recovered by subtraction, and the next smallest is suppressed too).
TABLE_SPECS: dict[str, dict] = {
    "sex": {"counts": ["numerator"], "partition": True,
            "pct": [("pct", "numerator", "denominator")], "derived": ["pct", "ci_low", "ci_high"]},
    "age_summary": {"counts": ["n"], "derived": ["mean", "sd", "min", "max", "median", "q1", "q3",
                                                 "mean_ci_low", "mean_ci_high"],
                    "drop": ["min", "max", "mean_ci_low", "mean_ci_high"],
                    "round1": ["mean", "sd", "median", "q1", "q3"],
                    "partition": ("group", ["sex=", "age "])},
    "age_sex_pyramid": {"counts": ["female", "male"], "partition": True},
    "age_by_sex_counts": {"counts": ["n"], "partition": True},
    "site_prevalence": {"counts": ["numerator"], "pct": [("pct", "numerator", "denominator")],
                        "derived": ["pct", "ci_low", "ci_high"]},
    "condition_prevalence": {"counts": ["numerator"], "pct": [("pct", "numerator", "denominator")],
                             "derived": ["pct", "ci_low", "ci_high"]},
    "condition_combinations": {"counts": ["n"], "partition": True, "derived": ["pct_of_pain"],
                               "drop_withheld_rows": True},
    "unmatched_codes": {"counts": ["records"]},
    "plausibility": {"counts": ["records"], "derived": ["pct"]},
    "duplicates": {"counts": ["exact_duplicates"], "derived": ["pct"]},
    "table_one": {"counts": ["pain_n", "rest_n"],
                  "derived_by": {"pain_n": ["pain_pct", "pain_ci_low", "pain_ci_high", "smd"],
                                 "rest_n": ["rest_pct", "rest_ci_low", "rest_ci_high", "smd"]},
                  "pct": [("pain_pct", "pain_n", None), ("rest_pct", "rest_n", None)],
                  "round1": ["pain_mean", "pain_sd", "rest_mean", "rest_sd", "smd"]},
    "completeness": {"counts": ["with_value", "records"], "derived": ["pct_complete"]},
    "code_coverage": {"counts": ["matched", "records"], "derived": ["pct"]},
}


def protect_table(df, name: str, rule: Rule | None):
    """The table ``name`` under ``rule``: counts below the threshold suppressed with
    what derives from them, one more cell suppressed where a lone suppressed cell of a
    partition could be recovered by subtraction, counts rounded and percentages
    recomputed from the rounded counts; returns (table, number of cells suppressed)."""
    import numpy as np

    spec = TABLE_SPECS.get(name)
    if rule is None or spec is None:
        return df, 0
    t = df.copy()
    for col in spec.get("drop", []):  # extremes identify single patients
        if col in t.columns:
            t[col] = np.nan
    suppressed = 0
    derived_by = spec.get("derived_by", {})
    for col in spec["counts"]:
        if col not in t.columns:
            continue
        vals = t[col].astype(float)
        mask = vals.apply(rule.suppressed) & vals.notna()
        part = spec.get("partition")
        if part is True:
            groups = [t.index]
        elif part:
            key, prefixes = part
            groups = [t.index[t[key].astype(str).str.startswith(pre)] for pre in prefixes]
        else:
            groups = []
        for g in groups:
            if mask[g].sum() == 1 and (~mask[g] & vals[g].notna()).sum() >= 1:
                # complementary suppression: the smallest other cell of the partition
                other = vals[g][~mask[g] & vals[g].notna()]
                mask[other.idxmin()] = True
        suppressed += int(mask.sum())
        t[col] = t[col].astype(float)
        t.loc[mask, col] = np.nan
        dep = derived_by.get(col, spec.get("derived", []))
        for d in dep:
            if d in t.columns:
                t[d] = t[d].astype(float) if t[d].dtype != object else t[d]
                t.loc[mask, d] = np.nan
    if rule.round_to > 1:
        for col in spec["counts"]:
            if col in t.columns:
                t[col] = t[col].apply(lambda v: v if v != v else float(rule.round(v)))
        for pct, num, den in spec.get("pct", []):
            if pct in t.columns and num in t.columns:
                if den and den in t.columns:
                    t[den] = t[den].apply(lambda v: v if v != v else float(rule.round(v)))
                    t[pct] = 100 * t[num] / t[den]
                elif den is None:  # the group size is the first row's count (Table 1)
                    t[pct] = 100 * t[num] / t[num].iloc[0]
                    t.loc[t.index[0], pct] = np.nan
        for c in t.columns:
            if "ci_low" in str(c) or "ci_high" in str(c):
                t[c] = np.nan  # intervals cannot be recomputed from rounded counts
    # an exact mean of integer ages (or counts) reveals the group's exact size
    for c in spec.get("round1", []):
        if c in t.columns:
            t[c] = t[c].astype(float).round(1)
    if spec.get("drop_withheld_rows"):
        # even the existence of a rare combination is disclosive: keep one summary row
        withheld = t[spec["counts"][0]].isna()
        if withheld.any():
            keep = t[~withheld].copy()
            t = keep
    t["disclosure"] = rule.name
    return t, suppressed


def protect_regression(table, rule: Rule | None):
    """Odds ratios of a group below the threshold are suppressed like its count: a term
    is withheld when its group or its reference group has fewer events or non-events
    than the threshold (cells from ``table.attrs['cells']``)."""
    import numpy as np

    if rule is None:
        return table, 0
    t = table.copy()
    cells = table.attrs.get("cells")
    n = 0
    for i, term in t["term"].items():
        if cells is None:
            bad = True
        elif term.startswith("age "):
            band, ref = term[4:].split(" vs ")
            groups = [cells[cells["band"] == band], cells[cells["band"] == ref]]
            bad = any(rule.suppressed(int(g["events"].sum())) or rule.suppressed(int(g["non_events"].sum()))
                      for g in groups)
        else:
            groups = [cells[cells["sex"] == s_] for s_ in ("M", "F")]
            bad = any(rule.suppressed(int(g["events"].sum())) or rule.suppressed(int(g["non_events"].sum()))
                      for g in groups)
        if bad:
            n += 1
            t.loc[i, ["odds_ratio", "ci_low", "ci_high", "p_value"]] = np.nan
    t["disclosure"] = rule.name
    return t, n
