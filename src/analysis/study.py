"""The study in one object: open the data, build the cube, and derive every figure.

``Study.figures()`` is the machine-readable summary printed by
``python -m analysis figures`` and shown by the notebooks (one code path).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

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
        """The figures of :data:`FIGURES`, in order; under a disclosure ``rule`` every
        count is the released one (withheld below the threshold, rounded), every share is
        computed from released counts, statistics of withheld groups are withheld, means
        and SDs are rounded to one decimal (an exact mean of integer ages would reveal the
        group's exact size), extremes, quantiles and the intervals of means are withheld."""
        p, cube = self.params, self.cube
        groups, _ = self.nested_groups
        hold = self.withheld_groups

        def group(k):
            """The released count of a nested group, or None when withheld."""
            x = None if k in hold else groups[k]
            return x if rule is None or x is None else rule.release(x)

        t_rel, n_rel = group("target"), group("population")
        estimate = eligibility_estimate(t_rel, n_rel, p) if t_rel is not None and n_rel else None
        bound = (
            " (a lower bound: the paper's 'at least')"
            if is_lower_bound(p.benefit_distribution, p.benefit_fraction)
            else ""
        )
        words = {
            "index_date": p.index_date,
            "registration": registration_words(p),
            "population": population_words(p),
            "pain": pain_words(p),
            "elderly_age": p.elderly_age,
            "min_episodes": p.min_episodes,
            "target": cohort.target_words(p),
            "bound": bound,
            "model": model_text(p),
            "gp_list_size": p.gp_list_size,
        }
        context = _FigureContext(
            rule=rule, group=group, params=p, cube=cube, flags=cube.flag_arrays(p),
            estimate=estimate, sizes={"population": n_rel, "target": t_rel,
                                      "gp_list_size": p.gp_list_size},
        )  # fmt: skip
        out = _database_figures(cube, rule, p) if cube.population is not None else []
        for figure in FIGURES:
            for id_, template, value, extra in figure.items(context):
                item = {"id": id_, "description": template.format(**words), "value": _num(value)}
                item.update({k: _num(v) for k, v in extra.items()})
                if rule is not None and value is None:
                    item["suppressed"] = True
                out.append(item)
        return out


# ----------------------------------------------------------------------------- the figures
@dataclass(frozen=True)
class _FigureContext:
    rule: object
    group: object  # name of a nested group -> its released count, or None
    params: Params
    cube: ProfileCube
    flags: dict
    estimate: EligibilityEstimate | None
    sizes: dict  # the denominators an estimate names: population, target, GP list


@dataclass(frozen=True)
class Count:
    """The patients of a nested group (:func:`analysis.cohort.nested_groups`)."""

    id: str
    description: str  # a template over the words of Study._figures
    group: str

    def items(self, ctx):
        yield self.id, self.description, ctx.group(self.group), {}


@dataclass(frozen=True)
class Share:
    """A share of group ``numerator`` in group ``denominator``, in percent, with its
    interval (the parameters' ``ci_method``), from released counts."""

    id: str
    description: str
    numerator: str
    denominator: str

    def items(self, ctx):
        x, n = ctx.group(self.numerator), ctx.group(self.denominator)
        if x is None or n is None:
            extra = {"numerator": None, "denominator": n, "ci_low": None, "ci_high": None}
            yield self.id, self.description, None, extra
            return
        pr = estimates.proportion(x, n, ctx.params)
        extra = {"numerator": pr.numerator, "denominator": pr.denominator,
                 "ci_low": pr.ci_low, "ci_high": pr.ci_high}  # fmt: skip
        yield self.id, self.description, pr.pct, extra


AGE_STATISTICS = (
    # (id suffix, description, attribute, why withheld under a rule; None: released)
    ("age_mean", "mean age of {label}, completed years at the index date", "mean", None),
    ("age_sd", "SD of age of {label} (n - 1 denominator), years", "sd", None),
    ("age_min", "youngest age of {label}, years", "min", "an extreme"),
    ("age_max", "oldest age of {label}, years", "max", "an extreme"),
    ("age_median", "median age of {label}, years", "median", "a patient's own age"),
    ("age_q1", "lower quartile of age of {label}, years", "q1", "a patient's own age"),
    ("age_q3", "upper quartile of age of {label}, years", "q3", "a patient's own age"),
)
"""The age summary of a group; under a rule the mean and SD rounded to one decimal (their
interval withheld), the rest withheld."""


@dataclass(frozen=True)
class AgeSummary:
    """:data:`AGE_STATISTICS` of a nested group (``flag``: its flag in the cube; None:
    every patient)."""

    group: str
    label: str
    flag: str | None = None

    def items(self, ctx):
        c = ctx.cube.columns
        mask = np.ones(len(c["n"]), dtype=bool) if self.flag is None else ctx.flags[self.flag]
        n_rel = ctx.group(self.group) if ctx.rule is not None else None
        a = None
        if ctx.rule is None or n_rel:
            a = estimates.age_summary_masked(c["age"], c["n"], mask, ctx.params.confidence_level)
        for suffix, template, attribute, why in AGE_STATISTICS:
            id_ = f"{self.group}.{suffix}"
            text = template.replace("{label}", self.label)
            value = None if a is None else getattr(a, attribute)
            if ctx.rule is not None:
                if why is not None:
                    yield id_, f"{text} (withheld: {why})", None, {}
                else:
                    yield (
                        id_,
                        text,
                        None if value is None else round(value, 1),
                        {"denominator": n_rel},
                    )
            elif attribute == "mean":
                yield id_, text, value, {"denominator": a.n, "ci_low": a.mean_ci_low,
                                         "ci_high": a.mean_ci_high}  # fmt: skip
            else:
                yield id_, text, value, {"denominator": a.n} if attribute == "sd" else {}


@dataclass(frozen=True)
class Estimate:
    """A figure of the eligibility estimate (:class:`EligibilityEstimate` attributes),
    from the released target subgroup and population; withheld with either."""

    id: str
    description: str
    value: str
    low: str
    high: str
    numerator: bool = False  # the target subgroup
    denominator: str | None = None  # a key of the context's sizes
    interval: str | None = None  # "prediction": for one list, not the expectation

    def items(self, ctx):
        e = ctx.estimate

        def g(name):
            return getattr(e, name) if e else None

        extra = {}
        if self.numerator:
            extra["numerator"] = ctx.sizes["target"]
        if self.denominator:
            extra["denominator"] = ctx.sizes[self.denominator]
        extra.update(ci_low=g(self.low), ci_high=g(self.high))
        if self.interval:
            extra["interval"] = self.interval
        yield self.id, self.description, g(self.value), extra


FIGURES = (
    Count("population.n", "patients in the population ({population})", "population"),
    AgeSummary("population", "all patients"),
    Share("population.female_pct", "female, % of all patients", "female", "population"),
    Share("population.elderly_pct", "aged >= {elderly_age}, % of all patients", "elderly",
          "population"),
    Count("pain.n", "patients with one or more qualifying episodes of {pain} in the window "
          "(pain cohort)", "pain"),
    Share("pain.pct_of_population", "pain cohort, % of all patients", "pain", "population"),
    AgeSummary("pain", "the pain cohort", "pain"),
    Share("pain.male_pct", "male, % of the pain cohort", "pain_male", "pain"),
    Share("pain.recurrent_pct", "recurrent (>= {min_episodes} episodes), % of the pain cohort",
          "pain_recurrent", "pain"),
    Share("pain.elderly_pct", "aged >= {elderly_age}, % of the pain cohort", "pain_elderly",
          "pain"),
    Count("pain_risk.n", "pain cohort with a history of a risk condition", "pain_risk"),
    Share("pain_risk.pct_of_pain", "with a risk condition, % of the pain cohort", "pain_risk",
          "pain"),
    Share("pain_risk_drug.pct_of_pain", "with a risk drug, % of the pain cohort",
          "pain_risk_drug", "pain"),
    Count("target.n", "target subgroup: {target}", "target"),
    Share("target.pct_of_pain", "target subgroup, % of the pain cohort", "target", "pain"),
    Share("target.pct_of_population", "target subgroup, % of all patients", "target",
          "population"),
    Estimate("candidates.n", "expected candidates for a local treatment{bound}: {model}",
             "candidates", "candidates_low", "candidates_high", numerator=True,
             denominator="population"),
    Estimate("candidates.pct_of_population", "expected candidates{bound}, % of all patients",
             "pct_of_population", "pct_low", "pct_high", denominator="population"),
    Estimate("candidates.per_1000", "expected candidates{bound} per 1000 patients", "per_1000",
             "per_1000_low", "per_1000_high"),
    Estimate("candidates.per_gp_list", "expected candidates{bound} per GP list of "
             "{gp_list_size} patients (the expected number per list; interval: uncertainty "
             "of the rate)", "per_gp_list", "per_gp_list_low", "per_gp_list_high",
             denominator="gp_list_size"),
    Estimate("candidates.in_one_gp_list", "candidates in one actual list of {gp_list_size} "
             "patients: the expected number with the prediction interval for one list (the "
             "rate's uncertainty and list-to-list variation)", "per_gp_list", "in_one_list_low",
             "in_one_list_high", denominator="gp_list_size", interval="prediction"),
)  # fmt: skip
"""The study's figures, in the order ``figures`` prints them, after the database's (which
say who was left out of the population: :func:`_database_figures`). Descriptions are
templates over the parameters' words (``Study._figures``)."""


def _database_figures(cube, rule, p) -> list[dict]:
    """Every patient of the database, and who was left out of the population and why. The
    database less the population is who was left out: where that is a small group the
    database's count is withheld; where one reason would follow from the other by
    subtraction, both are withheld."""
    pop, n_all = cube.population, cube.n_total

    def rel(x):
        return x if rule is None or x is None else rule.release(x)

    left = pop["database"] - n_all
    database = (
        None if rule is not None and 0 < left and rule.suppressed(left) else rel(pop["database"])
    )
    born, unreg = pop["born_after_index"], pop["not_registered"]
    if rule is not None and (rel(born) is None) != (rel(unreg) is None):
        born = unreg = None
    out = []
    for id_, description, value in (
        ("database.n", "every patient in the database (before the population definition)",
         database),
        ("excluded.born_after_index", f"left out of the population: born after {p.index_date}",
         rel(born)),
        ("excluded.not_registered",
         f"left out of the population: not {registration_words(p)}", rel(unreg)),
    ):  # fmt: skip
        item = {"id": id_, "description": description, "value": _num(value)}
        if rule is not None and value is None:
            item["suppressed"] = True
        out.append(item)
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
