"""The study in one object: open the data, build the cube, and derive every figure.

``Study.figures()`` is the machine-readable summary printed by
``python -m analysis figures`` and shown by the notebooks (one code path).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from analysis import cohort, estimates
from analysis.cohort import ProfileCube, pain_words, population_words, registration_words
from analysis.data import open_database
from analysis.eligibility import (
    EligibilityEstimate,
    eligibility_estimate,
    is_lower_bound,
    model_text,
)
from analysis.outputs import disclosure, protect
from analysis.outputs.disclosure import (
    TOP_AGE_FLOOR,
    nested_withheld,
    refuse_ages_above_top,
    release_status,
    resolve,
)
from analysis.params import Params


@dataclass
class Study:
    params: Params
    cube: ProfileCube
    data_location: str
    is_synthetic: bool
    metadata: dict = field(default_factory=dict)  # the database's dataset.json
    fingerprint: dict = field(default_factory=dict)  # the data's (Database.fingerprint)

    # ---- labels ---------------------------------------------------------------------
    @property
    def n_released(self) -> int | None:
        """The population size as released: rounded under a rounding rule, None when the
        rule withholds it (a population smaller than the threshold)."""
        rule = self.disclosure_rule
        return rule.release(self.cube.n_total) if rule else self.cube.n_total

    @property
    def n_words(self) -> str:
        """The released population size as a label prints it ("2,503", or "withheld")."""
        n = self.n_released
        return "withheld" if n is None else f"{int(n):,}"

    @property
    def data_label(self) -> str:
        return data_label(self.cube, self.disclosure_rule)

    # ---- tables ---------------------------------------------------------------------
    @property
    def disclosure_rule(self):
        return disclosure.resolve(self.params, self.is_synthetic)

    @property
    def release(self) -> str:
        """synthetic data / aggregates under disclosure control / NOT FOR RELEASE."""

        return release_status(self.params, self.is_synthetic)

    @cached_property
    def nested_groups(self) -> tuple[dict, dict]:
        """:func:`analysis.cohort.nested_groups` of the study (counts, what contains what)."""
        return cohort.nested_groups(self.cube, self.params)

    @cached_property
    def withheld_groups(self) -> set[str]:
        """The groups of :func:`analysis.cohort.nested_groups` whose counts the rule in force
        withholds (below the threshold, or within it of a released group that contains
        them); every output that counts one of them follows it."""

        rule = self.disclosure_rule
        if rule is None:
            return set()
        return nested_withheld(*self.nested_groups, rule)

    def attrition(self):
        """The attrition table, under the disclosure rule in force; a step whose group the
        figures withhold is withheld here too, with the steps drawn from it."""
        import math

        t = protect(
            cohort.attrition_table(self.cube, self.params),
            "attrition",
            self.disclosure_rule,
            self.params,
        ).table
        held = {s for s, g in ATTRITION_GROUPS.items() if g in self.withheld_groups}
        for i in t.index:
            if t.at[i, "step"] in held or t.at[i, "previous_step"] in held:
                held.add(t.at[i, "step"])
                t.loc[i, ["n", "pct_of_previous", "pct_of_all"]] = math.nan
        return t

    def eligibility(self) -> EligibilityEstimate | None:
        """The estimate, from counts under the disclosure rule in force (rounded counts
        in, so nothing finer than them can be recovered); None when the target count
        is suppressed."""
        f = self.cube.flag_arrays(self.params)
        x, n = self.cube.count(f["target"]), self.cube.n_total
        rule = self.disclosure_rule
        if rule is not None:
            x, n = rule.release(x), rule.release(n)
            if x is None or n is None or {"target", "population"} & self.withheld_groups:
                return None
        return eligibility_estimate(x, n, self.params)

    def figures(self) -> list[dict]:
        """Every figure of the study as ``{id, description, value[, numerator,
        denominator, ci_low, ci_high]}``; percentages in percent, unrounded; under the
        disclosure rule in force (off for synthetic data by default)."""

        rule = self.disclosure_rule
        figs = self._figures(rule)
        if rule is not None:
            for f in figs:
                f["disclosure"] = rule.describe()
        if self.release == "NOT FOR RELEASE":
            for f in figs:  # unrounded figures of real data, for checking only
                f["release"] = "NOT FOR RELEASE"
        return figs

    def _figures(self, rule=None) -> list[dict]:
        """The figures; under a disclosure ``rule`` every count is the released one
        (withheld below the threshold, rounded), every share is computed from released
        counts, statistics of withheld groups are withheld, means and quantiles are
        rounded to one decimal (an exact mean of integer ages would reveal the group's
        exact size), extremes and the intervals of means are withheld."""
        import numpy as np

        p, cube = self.params, self.cube
        f = cube.flag_arrays(p)
        c = cube.columns
        n_all = cube.n_total
        out: list[dict] = []
        # a nested group within the threshold of one that contains it is withheld, as its
        # difference would follow by subtraction
        groups, _ = self.nested_groups
        hold = self.withheld_groups

        def rel(x):
            """The released count, or None when withheld."""
            return x if rule is None or x is None else rule.release(x)

        def group(k):
            """The released count of a nested group, or None when withheld."""
            return None if k in hold else rel(groups[k])

        def add(id_, description, value, **extra):
            item = {"id": id_, "description": description, "value": _num(value)}
            item.update({k: _num(v) for k, v in extra.items()})
            if rule is not None and value is None:
                item["suppressed"] = True
            out.append(item)

        def add_count(id_, description, x):
            add(id_, description, rel(x))

        def add_prop(id_, description, x, n):
            """A share of group ``x`` in group ``n`` (names of ``groups``)."""
            x, n = group(x), group(n)
            if x is None or n is None:
                add(
                    id_, description, None, numerator=None, denominator=n, ci_low=None, ci_high=None
                )
                return
            pr = estimates.proportion(x, n, p)
            add(
                id_,
                description,
                pr.pct,
                numerator=pr.numerator,
                denominator=pr.denominator,
                ci_low=pr.ci_low,
                ci_high=pr.ci_high,
            )

        def add_age(prefix, label, mask):
            if rule is not None:
                n_rel = group(prefix)
                a = (
                    estimates.age_summary_masked(c["age"], c["n"], mask, p.confidence_level)
                    if n_rel
                    else None
                )

                def r1(v):
                    return None if a is None else round(v, 1)

                add(
                    f"{prefix}.age_mean",
                    f"mean age of {label}, completed years at the index date",
                    r1(a.mean if a else 0),
                    denominator=n_rel,
                )
                add(
                    f"{prefix}.age_sd",
                    f"SD of age of {label} (n - 1 denominator), years",
                    r1(a.sd if a else 0),
                    denominator=n_rel,
                )
                add(
                    f"{prefix}.age_min",
                    f"youngest age of {label}, years (withheld: an extreme)",
                    None,
                )
                add(
                    f"{prefix}.age_max",
                    f"oldest age of {label}, years (withheld: an extreme)",
                    None,
                )
                add(
                    f"{prefix}.age_median",
                    f"median age of {label}, years (withheld: a patient's own age)",
                    None,
                )
                add(
                    f"{prefix}.age_q1",
                    f"lower quartile of age of {label}, years (withheld: a patient's own age)",
                    None,
                )
                add(
                    f"{prefix}.age_q3",
                    f"upper quartile of age of {label}, years (withheld: a patient's own age)",
                    None,
                )
                return
            a = estimates.age_summary_masked(c["age"], c["n"], mask, p.confidence_level)
            add(
                f"{prefix}.age_mean",
                f"mean age of {label}, completed years at the index date",
                a.mean,
                denominator=a.n,
                ci_low=a.mean_ci_low,
                ci_high=a.mean_ci_high,
            )
            add(
                f"{prefix}.age_sd",
                f"SD of age of {label} (n - 1 denominator), years",
                a.sd,
                denominator=a.n,
            )
            add(f"{prefix}.age_min", f"youngest age of {label}, years", a.min)
            add(f"{prefix}.age_max", f"oldest age of {label}, years", a.max)
            add(f"{prefix}.age_median", f"median age of {label}, years", a.median)
            add(f"{prefix}.age_q1", f"lower quartile of age of {label}, years", a.q1)
            add(f"{prefix}.age_q3", f"upper quartile of age of {label}, years", a.q3)

        everyone = np.ones(len(c["n"]), dtype=bool)
        if cube.population is not None:
            pop = cube.population
            left = pop["database"] - n_all  # who was left out, by subtraction
            add(
                "database.n",
                "every patient in the database (before the population definition)",
                None
                if rule is not None and 0 < left and rule.suppressed(left)
                else rel(pop["database"]),
            )
            born, unreg = pop["born_after_index"], pop["not_registered"]
            if rule is not None and (rel(born) is None) != (rel(unreg) is None):
                # the database = the population + the two reasons: one withheld reason would
                # follow by subtraction, so the other is withheld with it
                born = unreg = None
            add_count(
                "excluded.born_after_index",
                f"left out of the population: born after {p.index_date}",
                born,
            )
            add_count(
                "excluded.not_registered",
                f"left out of the population: not {registration_words(p)}",
                unreg,
            )
        add(
            "population.n",
            f"patients in the population ({population_words(p)})",
            group("population"),
        )
        add_age("population", "all patients", everyone)
        add_prop("population.female_pct", "female, % of all patients", "female", "population")
        add_prop(
            "population.elderly_pct",
            f"aged >= {p.elderly_age}, % of all patients",
            "elderly",
            "population",
        )
        add(
            "pain.n",
            f"patients with one or more qualifying episodes of {pain_words(p)} in the "
            "window (pain cohort)",
            group("pain"),
        )
        add_prop("pain.pct_of_population", "pain cohort, % of all patients", "pain", "population")
        add_age("pain", "the pain cohort", f["pain"])
        add_prop("pain.male_pct", "male, % of the pain cohort", "pain_male", "pain")
        add_prop(
            "pain.recurrent_pct",
            f"recurrent (>= {p.min_episodes} episodes), % of the pain cohort",
            "pain_recurrent",
            "pain",
        )
        add_prop(
            "pain.elderly_pct",
            f"aged >= {p.elderly_age}, % of the pain cohort",
            "pain_elderly",
            "pain",
        )
        add(
            "pain_risk.n",
            "pain cohort with a history of a risk condition",
            group("pain_risk"),
        )
        add_prop(
            "pain_risk.pct_of_pain",
            "with a risk condition, % of the pain cohort",
            "pain_risk",
            "pain",
        )
        add_prop(
            "pain_risk_drug.pct_of_pain",
            "with a risk drug, % of the pain cohort",
            "pain_risk_drug",
            "pain",
        )
        add("target.n", f"target subgroup: {cohort.target_words(p)}", group("target"))
        add_prop("target.pct_of_pain", "target subgroup, % of the pain cohort", "target", "pain")
        add_prop(
            "target.pct_of_population", "target subgroup, % of all patients", "target", "population"
        )

        t_rel, n_rel = group("target"), group("population")
        e = eligibility_estimate(t_rel, n_rel, p) if t_rel is not None and n_rel else None
        g = (lambda name: getattr(e, name)) if e else (lambda name: None)

        bound = (
            " (a lower bound: the paper's 'at least')"
            if is_lower_bound(p.benefit_distribution, p.benefit_fraction)
            else ""
        )
        add(
            "candidates.n",
            f"expected candidates for a local treatment{bound}: {model_text(p)}",
            g("candidates"),
            numerator=t_rel,
            denominator=n_rel,
            ci_low=g("candidates_low"),
            ci_high=g("candidates_high"),
        )
        add(
            "candidates.pct_of_population",
            f"expected candidates{bound}, % of all patients",
            g("pct_of_population"),
            denominator=n_rel,
            ci_low=g("pct_low"),
            ci_high=g("pct_high"),
        )
        add(
            "candidates.per_1000",
            f"expected candidates{bound} per 1000 patients",
            g("per_1000"),
            ci_low=g("per_1000_low"),
            ci_high=g("per_1000_high"),
        )
        add(
            "candidates.per_gp_list",
            f"expected candidates{bound} per GP list of {p.gp_list_size} patients "
            "(the expected number per list; interval: uncertainty of the rate)",
            g("per_gp_list"),
            denominator=p.gp_list_size,
            ci_low=g("per_gp_list_low"),
            ci_high=g("per_gp_list_high"),
        )
        add(
            "candidates.in_one_gp_list",
            f"candidates in one actual list of {p.gp_list_size} patients: the "
            "expected number with the prediction interval for one list (the "
            "rate's uncertainty and list-to-list variation)",
            g("per_gp_list"),
            denominator=p.gp_list_size,
            ci_low=g("in_one_list_low"),
            ci_high=g("in_one_list_high"),
            interval="prediction",
        )
        return out


def _num(v):
    """Plain Python numbers for JSON (ints stay ints)."""
    if v is None:
        return None
    try:
        import numpy as np

        if isinstance(v, np.integer):
            return int(v)
        if isinstance(v, np.floating):
            v = float(v)
    except ImportError:  # pragma: no cover
        pass
    return v


# the attrition's steps that count a group of cohort.nested_groups
ATTRITION_GROUPS = {
    "all_patients": "population",
    "pain": "pain",
    "pain_risk_condition": "pain_risk",
    "target": "target",
}


def data_label(cube, rule) -> str:
    """What a caption says of the data: "user data, n = 2,505 (opensafely rule: ...)"; the
    size released under ``rule`` ("withheld" when the rule withholds it)."""
    kind = "synthetic default data" if cube.is_synthetic else "user data"
    n = rule.release(cube.n_total) if rule else cube.n_total
    text = f"{kind}, n = {'withheld' if n is None else f'{int(n):,}'}"
    return text + (f" ({rule.describe()})" if rule else "")


def run_study(
    data: str | Path | None = None,
    params: Params | None = None,
    *,
    severities=(),
    episode_cap=None,
    condition_lists=None,
    drug_lists=None,
    drug_counts: bool = False,
    detail: bool = True,
    by_practice: bool = False,
) -> Study:
    """Open and validate ``data`` (a contract folder, ``data/synthetic`` by default), build
    the profile cube under ``params`` and return the :class:`Study`."""

    p = params or Params()
    db = open_database(data, validate="alongside")  # the cube is built while it validates
    try:
        try:
            cube = cohort.profile_cube(
                db,
                p,
                severities=severities,
                episode_cap=episode_cap,
                condition_lists=condition_lists,
                drug_lists=drug_lists,
                drug_counts=drug_counts,
                detail=detail,
                by_practice=by_practice,
            )
        finally:
            db.check_valid()  # nothing is returned, and no engine error shown, for bad data
    finally:
        db.close()
    rule = resolve(p, db.is_synthetic)
    if rule is not None:
        # under disclosure control ages of 90 and over count as 90 in every table and
        # statistic (an extreme age identifies a patient), whatever the parameters
        refuse_ages_above_top(p, rule, f"Parameters for {db.location}")
        cube = cube.top_coded(TOP_AGE_FLOOR)
    return Study(
        params=p,
        cube=cube,
        data_location=str(db.location),
        is_synthetic=db.is_synthetic,
        metadata=dict(db.metadata or {}),
        fingerprint=db.fingerprint(),
    )
