"""Statistical disclosure control of aggregate outputs.

Rules (parameter ``disclosure``):

* ``opensafely``: counts of 7 or fewer are redacted, the others rounded to the nearest 5;
  percentages are recomputed from the rounded counts (OpenSAFELY output checking rules);
* ``ohdsi``: counts below 5 are suppressed (OHDSI minimum cell count);
* ``datashield``: counts below 3 are suppressed (DataSHIELD default filter);
* ``off``: nothing suppressed; ``auto``: ``off`` for data marked synthetic, ``opensafely``
  for any other data.

A statistic of a group whose count is suppressed (its mean, SD, interval) is suppressed
with it. This module covers the figures summary and the attrition table; complementary
suppression of the other tables is the own-data work (see the issues).
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

    def round(self, count):
        if count is None or self.round_to <= 1:
            return count
        return int(self.round_to * math.floor(count / self.round_to + 0.5))


RULES = {
    "opensafely": Rule("opensafely", threshold=8, round_to=5),
    "ohdsi": Rule("ohdsi", threshold=5),
    "datashield": Rule("datashield", threshold=3),
}


def resolve(rule_name: str, is_synthetic: bool) -> Rule | None:
    """The rule in force: ``auto`` means off for synthetic data, OpenSAFELY otherwise."""
    if rule_name == "auto":
        rule_name = "off" if is_synthetic else "opensafely"
    return RULES.get(rule_name)


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
