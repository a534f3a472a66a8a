"""The disclosure rules, and the withholding decisions that are arithmetic on counts alone.

A rule (parameter ``disclosure``) withholds counts below its threshold and rounds the
others (:class:`Rule`, :data:`RULES`, :func:`resolve`); under a rule ages of 90 and over
count as 90 (:func:`refuse_ages_above_top`); a count within the threshold of a released
count that contains it is withheld (:func:`nested_withheld`,
:func:`nested_withheld_by_masks`). These sit below the statistics, which use them; the one
step that protects a whole table is :func:`analysis.outputs.disclosure.protect`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analysis.errors import AnalysisError

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
