"""The methods and results of a run in words, as a paper would print them.

Every sentence is generated from the resolved parameters, the code-list files and the data
(the counts of the results paragraph are the released ones, under the disclosure rule in
force), so that the text cannot drift from what was computed. ``python -m analysis methods``
prints the whole text; each notebook shows the parts that concern it
(:data:`NOTEBOOK_SECTIONS`); a batch writes ``methods.md`` and ``methods.html`` beside its
index.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

from analysis import cohort
from analysis.codelists import load_codelist
from analysis.eligibility import benefit_support, is_lower_bound
from analysis.engines import engine_label, source_name
from analysis.estimates import METHOD_LABEL
from analysis.outputs import atomic_write_text, disclosure
from analysis.pages import markdown_html, render
from analysis.params import Params
from analysis.practices import comparable
from analysis.sensitivity import load_grid
from analysis.study import run_study

# heading of each section, in the order of a methods section
HEADINGS = {
    "data": "Data",
    "population": "Study population",
    "definitions": "Definitions",
    "codelists": "Code lists",
    "statistics": "Statistical methods",
    "eligibility": "Eligibility for a local treatment",
    "sensitivity": "Sensitivity analyses",
    "reproduction": "Reproduction of the published figures",
    "quality": "Data quality",
    "practices": "Practices and pooling",
    "disclosure": "Disclosure control",
    "software": "Software",
    "results": "Results",
}

# the sections each notebook shows (the batch index links the whole text)
NOTEBOOK_SECTIONS = {
    "01_cohort_profile": ("data", "population", "statistics", "disclosure", "results"),
    "02_pain_and_risk": ("population", "definitions", "codelists", "statistics", "results"),
    "03_eligibility": ("population", "definitions", "eligibility", "results"),
    "04_sensitivity": ("definitions", "eligibility", "sensitivity"),
    "05_reproduction": ("reproduction", "results"),
    "06_data_quality": ("data", "quality", "codelists"),
    "07_practices": ("population", "definitions", "practices", "disclosure"),
}

REFERENCES = {
    "wilson": "Wilson EB. J Am Stat Assoc 1927;22:209-12",
    "newcombe": "Newcombe RG. Stat Med 1998;17:857-72",
    "clopper_pearson": "Clopper CJ, Pearson ES. Biometrika 1934;26:404-13",
    "agresti_coull": "Agresti A, Coull BA. Am Stat 1998;52:119-26",
    "jeffreys": "Brown LD, Cai TT, DasGupta A. Stat Sci 2001;16:101-33",
    "austin": "Austin PC. Commun Stat Simul Comput 2009;38:1228-34",
    "firth": "Firth D. Biometrika 1993;80:27-38",
    "heinze": "Heinze G, Schemper M. Stat Med 2002;21:2409-19",
    "grim": "Brown NJL, Heathers JAJ. Soc Psychol Personal Sci 2017;8:363-9",
    "paper": "Mammucari M, et al. Pain Ther 2016;5:123-6",
}


@dataclass
class Methods:
    """The text, section by section (Markdown). ``part(...)`` keeps some sections;
    ``markdown()`` and ``html()`` render it; a notebook displays it as Markdown."""

    sections: dict[str, str]
    title: str = "Methods"
    notes: list[str] = field(default_factory=list)

    def part(self, *keys: str) -> Methods:
        unknown = [k for k in keys if k not in HEADINGS]
        if unknown:
            raise KeyError(f"unknown section(s) {unknown}; known: {', '.join(HEADINGS)}")
        return Methods({k: v for k, v in self.sections.items() if k in keys}, self.title)

    def markdown(self, level: int = 2) -> str:
        h = "#" * level
        out = [f"{h} {self.title}"] if self.title else []
        sub = "#" * (level + 1) if self.title else h
        for key, text in self.sections.items():
            out += [f"{sub} {HEADINGS[key]}", text]
        return "\n\n".join(out) + "\n"

    def html(self, extra: str = "") -> str:
        """A standalone page (data names escaped; no script); ``extra``: more Markdown
        after the sections."""
        return render(
            "methods.html.j2",
            title=self.title,
            body=markdown_html(self.markdown(1)),
            extra=markdown_html(extra) if extra else "",
        )

    def _repr_markdown_(self) -> str:
        return self.markdown(level=3)

    def __str__(self) -> str:
        return self.markdown()


# ----------------------------------------------------------------------------- words
def _long(d) -> str:
    return f"{d.day} {d:%B %Y}"


def _count(v) -> str:
    return "withheld" if v is None else f"{int(round(v)):,}"


def _pct(v, digits: int = 1) -> str:
    return (
        "withheld" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"
    )


def _and(items) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _or(items) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


def list_words(name: str) -> str:
    """``risk_condition_heart_failure`` -> ``heart failure``."""
    for prefix in ("risk_condition_", "risk_drug_"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name.replace("copd_asthma", "COPD or asthma").replace("ssri", "SSRIs").replace("_", " ")


def _assumption_words(p: Params) -> str:
    """What the eligibility estimate rests on, said beside it: the benefit share is an
    assumption (the paper's, from a review of open studies), not a finding of this data;
    the interval treats the practice's patients as a sample of patients like them."""

    if is_lower_bound(p.benefit_distribution, p.benefit_fraction):
        share = (
            'The 50% who would benefit is the paper\'s assumption ("at least 50%", from a '
            "review of open studies), not a finding of these data"
        )
    elif p.benefit_distribution == "fixed":
        share = f"The share who would benefit, {p.benefit_fraction:g}, is an assumed value"
    else:
        share = f"The share who would benefit ({benefit_words(p)}) is an assumed distribution"
    return (
        f"{share}; the interval treats the practice's patients as a sample of patients like "
        "them, and carries the sampling uncertainty of the target proportion"
        + (
            " and the assumed spread of the benefit share."
            if p.benefit_distribution != "fixed"
            else ", not any uncertainty of the benefit share."
        )
    )


def coding_words(metadata: dict) -> str:
    """How the import mapped diagnosis codes, and what it left out (from the database's
    ``dataset.json``), as sentences; empty when nothing was mapped."""
    out = ""
    m = metadata.get("code_mapping") or {}
    if m:
        out += (
            f" Diagnoses recorded in {m.get('from')} were mapped to {m.get('to')} by the "
            f"longest matching code prefix in `{m.get('file')}` (SHA-256 "
            f"{str(m.get('sha256', ''))[:16]}); {_count(m.get('mapped_records'))} record(s) "
            "were mapped."
        )
    un = metadata.get("unmapped_diagnoses") or {}
    if un:
        parts = _and(f"{_count(v)} of {k}" for k, v in sorted(un.items()))
        out += (
            f" Diagnosis records that could not be mapped were left out ({parts}): the risk "
            "definitions see none of them."
        )
    return out


def interval_words(p: Params) -> str:
    level = f"{100 * p.confidence_level:g}%"
    refs = {
        "wilson": f"{REFERENCES['wilson']}; {REFERENCES['newcombe']}",
        "clopper_pearson": REFERENCES["clopper_pearson"],
        "agresti_coull": REFERENCES["agresti_coull"],
        "jeffreys": REFERENCES["jeffreys"],
    }[p.ci_method]
    name = METHOD_LABEL[p.ci_method].split(" (")[0]
    return f"two-sided {level} {name}s ({refs})"


def benefit_words(p: Params) -> str:
    if p.benefit_distribution == "fixed":
        lb = ' (the paper\'s "at least 50%": the estimate is a lower bound)'
        return f"a fixed share of {p.benefit_fraction:g}" + (
            lb if p.benefit_fraction == 0.5 else ""
        )
    lo, hi = benefit_support(p)
    if p.benefit_distribution == "uniform":
        return f"a share uniformly distributed between {lo:g} and {hi:g}"
    return (
        f"a share following a Beta({p.benefit_beta_a:g}, {p.benefit_beta_b:g}) distribution "
        f"scaled to {lo:g}-{hi:g}"
    )


def target_words(p: Params) -> str:
    return (
        f"patients of the pain cohort with at least {p.min_episodes} qualifying episodes "
        f"(recurrent pain), aged {p.elderly_age} years or more, with a risk condition or a "
        "risk drug"
    )


def _codelist_rows(p: Params) -> list[str]:
    rows = []
    for name in (*p.risk_conditions, *p.risk_drugs):
        cl = load_codelist(name)
        digest = hashlib.sha256(cl.path.read_bytes()).hexdigest()
        rows.append(
            f"| `{cl.path.name}` | {list_words(name)} | {cl.vocabulary} | {len(cl.codes)} "
            f"| `{digest[:16]}` |"
        )
    return rows


# ----------------------------------------------------------------------------- sections
def methods_text(
    params: Params,
    study=None,
    *,
    data_name: str | None = None,
    engine: str | None = None,
    grid=None,
) -> Methods:
    """The methods (and, with a ``study``, the results) in words; ``grid`` is the
    sensitivity grid (:func:`analysis.sensitivity.load_grid`; the package's by default)."""
    p = params
    s: dict[str, str] = {}
    idx, ws = _long(p.index), _long(p.window_start)
    s["data"] = _data_words(study, data_name, engine)
    s["population"] = (
        f"The study population comprised {cohort.population_words(p)} (the index date). "
        f"Ages are completed years on the index date; the look-back window runs from {ws} to "
        f"{idx}, both included, and no event after the index date counts. Patients outside "
        "the population, and their events, are left out of every count."
    )
    s["definitions"] = _definitions_words(p)
    s["codelists"] = (
        "Each list is a versioned CSV file in `data/codelists/` (a recorded code matches an "
        "entry when, with dots removed, it starts with the entry's code, in the list's own "
        "vocabulary). The SHA-256 digest (first 16 hexadecimal digits) identifies the exact "
        "file used.\n\n| file | list | vocabulary | entries | SHA-256 |\n|---|---|---|---|---|\n"
        + "\n".join(_codelist_rows(p))
    )
    s["statistics"] = (
        f"Proportions are given with {interval_words(p)}. Mean ages are given with their SD "
        f"(n - 1 denominator) and {100 * p.confidence_level:g}% t intervals. Table 1 compares "
        "the pain cohort with the rest of the population; differences are standardized mean "
        f"differences ({REFERENCES['austin']}). The odds of a risk condition in the pain "
        "cohort by age band and sex were estimated by grouped logistic regression: maximum "
        "likelihood with Wald intervals when every age band x sex cell has patients with and "
        "without a risk condition and the fit converges, otherwise (an empty cell, or a "
        "maximum-likelihood fit that does not converge) Firth's penalized likelihood with "
        f"profile-likelihood intervals and penalized likelihood-ratio p-values "
        f"({REFERENCES['firth']}; {REFERENCES['heinze']}), the method named in the table; a "
        "fit that converges under neither is reported as not estimated. Age bands start at "
        f"{_and(str(e) for e in p.age_band_edges)} years."
    )
    s["eligibility"] = _eligibility_words(p)
    s["sensitivity"] = sensitivity_words(grid)
    s["reproduction"] = (
        "Each published figure (`data/reference/published.csv`, "
        f"{REFERENCES['paper']}) was recomputed from the data under the definitions above and "
        "compared at the published precision. The arithmetic of the published figures was "
        f"audited from the printed numbers alone: GRIM ({REFERENCES['grim']}) asks whether a "
        "count over its denominator can print as each percentage; cross-figure checks ask "
        "whether figures about the same patients agree; the smallest and largest SD of "
        "integer ages compatible with n, the mean, the range and the subgroup counts are "
        "computed exactly."
    )
    s["quality"] = (
        "Before the analysis, every column was checked for completeness; values allowed by "
        "the contract but implausible (ages over 105, severities of 0), duplicate records, "
        "events outside the patient's registration or after the index date were counted, "
        "and the share of diagnosis and prescription records matched by the code lists was "
        "computed, with the most frequent unmatched codes."
    )
    s["practices"] = _practices_words(p, study)
    s["disclosure"] = _disclosure_words(p, study)
    s["software"] = _software_words(engine)
    if study is not None:
        s["results"] = results_words(study)
    return Methods(s)


def _data_words(study, data_name, engine) -> str:
    """Which data, in which contract, validated, read with which engine."""
    if study is not None:
        kind = (
            "the synthetic default cohort of this project (generated to reproduce the "
            "published figures; not real patients)"
            if study.is_synthetic
            else "a patient-level extract supplied by the user"
        )
        where = f" (`{data_name}`)" if data_name else ""
        return (
            f"The analysis used {kind}{where}, held in the project's data contract (tables "
            "`patients`, `diagnoses`, `pain_episodes` and `prescriptions`, documented in "
            "`data/README.md`) and validated against it before any count was made"
            + (f"; it was read with {engine}" if engine else "")
            + "."
            + coding_words(getattr(study, "metadata", None) or {})
        )
    else:
        return (
            "The analysis uses patient-level data in the project's data contract (tables "
            "`patients`, `diagnoses`, `pain_episodes` and `prescriptions`, documented in "
            "`data/README.md`), validated against it before any count is made."
        )


def _definitions_words(p) -> str:
    """The pain cohort, recurrence, risk conditions and drugs, the target subgroup and the
    candidates, as the parameters define them."""
    return (
        f"A qualifying pain episode was an episode of {cohort.pain_words(p)} recorded in the "
        "window; the **pain cohort** comprised the patients with at least one. Pain was "
        f"**recurrent** with at least {p.min_episodes} qualifying episodes in the window. A "
        "**risk condition** (a condition that makes long-term systemic NSAIDs unsafe) was a "
        "diagnosis recorded on or before the index date in any of the code lists for "
        f"{_or(list_words(c) for c in p.risk_conditions) or 'none'}; a **risk drug** a "
        "prescription on or before the index date in any of the lists for "
        f"{_or(list_words(d) for d in p.risk_drugs) or 'none'}. **Elderly** patients were "
        f"aged {p.elderly_age} years or more. The **target subgroup** comprised "
        f"{target_words(p)}. **Candidates** for a local treatment (mesotherapy) are the target "
        f"subgroup times the share expected to benefit, {benefit_words(p)}. "
        + (
            "Events (pain episodes, diagnoses, prescriptions) counted whatever their date "
            "against the patient's registration, as in the paper's query; the data-quality "
            "report counts those dated outside it."
            if p.events_outside_registration == "count"
            else "Only events (pain episodes, diagnoses, prescriptions) dated within the "
            "patient's registration (from registered_from to registered_to, open-ended when "
            "the patient is still registered) counted; those outside it were left out "
            "(events_outside_registration: leave_out)."
        )
    )


def _practices_words(p, study) -> str:
    """How practices are compared and pooled (or that there is one practice)."""
    words = (
        "Each practice's target subgroup was counted from the same single pass over the data, "
        "with the practice as a stratum, and given the interval of a proportion above and "
        "the eligibility interval per GP list. The practices' target proportions were pooled "
        "on the logit scale (log(x / (n - x)), variance 1/x + 1/(n - x); 0.5 added to both "
        "cells of a practice with no or only target patients) by "
        + {
            "dl": "a random-effects model with the DerSimonian-Laird estimate of the "
            "between-practice variance tau\u00b2 (DerSimonian R, Laird N. Control Clin Trials "
            "1986;7:177-88)",
            "reml": "a random-effects model with the restricted maximum-likelihood estimate of "
            "tau\u00b2 (Viechtbauer W. J Educ Behav Stat 2005;30:261-93)",
            "fixed": "a fixed (common) effect, inverse-variance model",
        }[p.pool_method]
        + "; I\u00b2 is the share of the variation beyond chance (with fewer than two "
        "practices I\u00b2 and tau\u00b2 are not estimable), and the "
        f"{100 * p.confidence_level:g}% prediction interval for a new practice uses a t "
        "distribution with k - 2 degrees of freedom (Higgins JPT, Thompson SG, "
        "Spiegelhalter DJ. J R Stat Soc A 2009;172:137-59). The funnel plot shows each "
        "practice's share against its size with 95% and 99.8% control limits around the "
        "network's share: the exact quantiles of the binomial distribution at that share and "
        "size, interpolated as Spiegelhalter describes (Spiegelhalter DJ. Stat Med "
        "2005;24:1185-202, appendix A.1.1) and kept within 0-100%. Practices with a count "
        "withheld by disclosure control are left out of the table, the plots and the pool, "
        "and counted; so that subtracting the table from the network's totals cannot give "
        "them back, further practices (the smallest target subgroup first) are left out with "
        "them until the left-out practices together hold no count that the rule would "
        "withhold."
    )
    held = getattr(getattr(study, "cube", None), "practices", None)
    if held is not None and len(held.practice_ids) < 2:
        return (
            "The data hold one practice, so practices were not compared or pooled (at least "
            "two are needed)."
        )
    return words


def sensitivity_words(grid=None) -> str:
    g = grid if grid is not None else load_grid()
    varied = []
    for name, items in g.vary.items():
        labels = [str(label) for label, _ in items]
        varied.append(f"`{name}` ({_or(labels)})")
    return (
        f"The eligibility estimate was recomputed over a grid of {g.size} combinations of "
        f"definitions and assumptions (grid file `{Path(g.source).name}`): {'; '.join(varied)}. "
        "The tornado chart changes one parameter at a time from the definitions above and "
        "shows the range of the estimate; the heat map crosses the elderly age threshold with "
        "the benefit share. Every cell is computed from the same single pass over the data as "
        "the main estimate, under the same disclosure rule."
    )


def _eligibility_words(p: Params) -> str:
    m = METHOD_LABEL[p.ci_method].split(" (")[0]
    level = f"{100 * p.confidence_level:g}%"
    if p.benefit_distribution == "fixed":
        how = (
            f"The expected number of candidates is the target subgroup times {p.benefit_fraction:g}"
            f"; its {level} interval is the {m} of the target proportion times "
            f"{p.benefit_fraction:g}, so it carries the sampling uncertainty of the proportion "
            "only, not the uncertainty of the benefit share."
        )
    else:
        how = (
            "The target proportion is given its confidence distribution (the "
            f"{m} inverted at every level) and multiplied by the benefit share "
            f"({benefit_words(p)}); the estimate is the expectation of the product and its "
            f"{level} interval the exact {50 * (1 - p.confidence_level):g}% and "
            f"{50 * (1 + p.confidence_level):g}% quantiles of the product, computed by "
            "numerical integration (no simulation), so it carries both uncertainties."
        )
    return (
        f"{how} Per 1000 patients and per GP list of {p.gp_list_size:,} patients the rate is "
        "scaled with the same interval (the expected number per list). The count in one "
        f"actual list of {p.gp_list_size:,} patients is given with a {level} prediction "
        "interval: the quantiles of a binomial count over that list, mixed over the "
        "uncertainty of the rate, which adds list-to-list variation. The interval of the "
        "expectation is not the range of counts a single practice will see."
    )


def _disclosure_words(p: Params, study) -> str:
    synthetic = bool(study.is_synthetic) if study is not None else None
    rule = disclosure.resolve(p, synthetic) if synthetic is not None else None
    if synthetic is None:
        return (
            f"Outputs pass one disclosure step under the rule `{p.disclosure}` (auto: none for "
            "data marked synthetic, the OpenSAFELY rule otherwise): counts below the threshold "
            "are withheld with every statistic of their group, the others rounded, and shares "
            "and intervals are recomputed from the released counts."
        )
    if rule is None:
        why = (
            "the data are synthetic (not real patients)"
            if synthetic
            else "disclosure control was switched off (NOT FOR RELEASE)"
        )
        return f"No disclosure control was applied: {why}."
    stamp = (
        ""
        if rule.for_release
        else " These settings are weaker than the rule's own: NOT FOR RELEASE."
    )
    return (
        f"Every released number passed one disclosure step ({rule.describe()}). Statistics of a "
        "withheld group are withheld with it; shares and proportion intervals are recomputed "
        "from the released counts; means are rounded and extremes withheld; ages of 90 and "
        "over count as 90; where one withheld cell of a partition could be recovered by "
        "subtraction, the next smallest is withheld too, and a count that differs from a "
        "released count containing it by fewer patients than the threshold is withheld."
        f"{stamp}"
    )


def _software_words(engine: str | None) -> str:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    names = ("analysis", "duckdb", "pandas", "numpy", "scipy", "statsmodels", "matplotlib")
    parts = []
    for n in names:
        try:
            parts.append(f"{n} {version(n)}")
        except PackageNotFoundError:
            continue
    return (
        f"Computed with Python {platform.python_version()} and {_and(parts)}"
        + (f"; data engine {engine}" if engine else "")
        + ". The exact environment is pinned in `requirements.lock` (pip) and "
        "`environment.yml` (conda)."
    )


# ----------------------------------------------------------------------------- results
def results_words(study) -> str:
    """The key counts in sentences, from the released figures."""
    p = study.params
    figs = {f["id"]: f for f in study.figures()}
    rule = study.disclosure_rule

    def v(fid):
        return figs.get(fid, {}).get("value")

    def prop(fid):
        f = figs.get(fid, {})
        if f.get("value") is None:
            return "withheld"
        return (
            f"{_pct(f['value'])}%, {100 * p.confidence_level:g}% CI "
            f"{_pct(f['ci_low'])}\u2013{_pct(f['ci_high'])}"
        )

    if v("population.n") is None and rule is not None:
        return (
            f"The population is too small to be released ({rule.describe()}); every "
            "count, and everything computed from one, is withheld."
        )
    out = []

    def some(items, withheld):
        """Released items joined; withheld ones named once ("... is withheld")."""
        said = _and(items)
        if withheld:
            held = f"the number {_and(withheld)} {'is' if len(withheld) == 1 else 'are'} withheld"
            said = f"{said}; {held}" if said else held
        return said

    out += _population_words(figs, p)
    if v("pain.n") is None:
        out.append(
            f"The number of patients with {cohort.pain_words(p)} in the window (the pain "
            "cohort) is withheld, and every count within it."
        )
    else:
        known, held = [], []
        for fid, what in (
            ("pain_risk.pct_of_pain", "had a risk condition"),
            ("pain.recurrent_pct", "had recurrent pain"),
        ):
            n = figs.get(fid, {}).get("numerator")
            if n is None or figs.get(fid, {}).get("value") is None:
                held.append("with " + what.split(" ", 1)[1])
            else:
                known.append(f"{_count(n)} ({prop(fid)}) {what}")
        out.append(
            f"{_count(v('pain.n'))} of {_count(v('population.n'))} patients "
            f"({prop('pain.pct_of_population')}) had {cohort.pain_words(p)} in the window (the "
            f"pain cohort). Of these, {some(known, held)}."
        )
    if v("target.n") is None:
        out.append(
            "The target subgroup is withheld by disclosure control, with its shares of the "
            "pain cohort and of the population."
        )
    else:
        out.append(
            f"{_count(v('target.n'))} patients ({prop('target.pct_of_pain')} of the pain "
            f"cohort; {prop('target.pct_of_population')} of the population) formed the target "
            "subgroup."
        )
    out.append(_estimate_words(figs, p))
    if rule is not None:
        out.append(f"Counts are released under the {rule.describe()}.")
    return " ".join(x[:1].upper() + x[1:] for x in out)  # "withheld patients ..." starts one


def _population_words(figs: dict, p) -> list[str]:
    """The database, who was left out, and the population's sex and age, in sentences."""

    def v(fid):
        return figs.get(fid, {}).get("value")

    out = []
    if "database.n" in figs:
        known, held = [], []
        for fid, what in (
            ("excluded.born_after_index", "born after the index date"),
            ("excluded.not_registered", f"not {cohort.registration_words(p)}"),
        ):
            n = v(fid)
            if n is None:
                held.append(what)
            else:
                known.append(f"{_count(n)} {'was' if n == 1 else 'were'} {what}")
        left = _and(known) + "; " if known else ""
        out.append(
            f"Of {_count(v('database.n'))} patients in the database, {left}"
            f"{_count(v('population.n'))} formed the population"
            + (f" (the number left out as {_or(held)} is withheld)" if held else "")
            + "."
        )
    else:
        out.append(f"The population comprised {_count(v('population.n'))} patients.")
    age, sd, female = v("population.age_mean"), v("population.age_sd"), v("population.female_pct")
    out.append(
        ("The share of women is withheld" if female is None else f"{_pct(female)}% were female")
        + "; the population's mean age "
        + (
            "is withheld"
            if age is None
            else f"was {age:.1f} years" + (f" (SD {sd:.1f})" if sd is not None else "")
        )
        + "."
    )
    return out


def _estimate_words(figs: dict, p) -> str:
    """The eligibility estimate in a sentence, with its assumption (or that it is withheld)."""
    c = figs.get("candidates.n", {})
    if c.get("value") is None:
        return "The eligibility estimate is withheld with the target subgroup."
    bound = "at least " if is_lower_bound(p.benefit_distribution, p.benefit_fraction) else ""
    g, one = figs["candidates.per_gp_list"], figs["candidates.in_one_gp_list"]
    level = f"{100 * p.confidence_level:g}%"
    return (
        f"The expected number of candidates for a local treatment was {bound}"
        f"{c['value']:.1f} ({level} CI {c['ci_low']:.1f}\u2013{c['ci_high']:.1f}), "
        f"{g['value']:.1f} per GP list of {p.gp_list_size:,} patients "
        f"({g['ci_low']:.1f}\u2013{g['ci_high']:.1f}); one actual list of "
        f"{p.gp_list_size:,} patients would hold {one['ci_low']}\u2013{one['ci_high']} "
        f"candidates ({level} prediction interval). " + _assumption_words(p)
    )


# ----------------------------------------------------------------------------- batches
def batch_methods(batch, results: list[dict]) -> Methods | None:
    """The whole text for a batch: for each data source, the methods and results under
    its base scenario (the run with the fewest overrides), then each scenario's changes."""

    ok = {r["run"] for r in results if r.get("status") in ("ok", "up to date")}
    runs = [r for r in batch.runs if r.name in ok]
    if not runs:
        return None
    sections: dict[str, str] = {}
    parts = []
    compares = _compares_practices(batch, runs)
    for source in dict.fromkeys(r.source for r in runs):
        base = min((r for r in runs if r.source == source), key=lambda r: len(r.overrides))
        params = Params.from_mapping(
            {k: v for k, v in base.overrides.items() if k in Params.names()}
        )
        study = run_study(base.data, params, detail=False)
        text = methods_text(
            params, study, data_name=source_name(base.data), engine=engine_label(base.data)
        )
        if not compares:  # pooling is described only where practices are compared
            text.sections.pop("practices", None)
        parts.append(
            f"## Data source `{source}` (scenario `{base.scenario}`)\n\n"
            + text.markdown(level=2).split("\n", 2)[2]  # without its own title
        )
    scen = {}
    for r in runs:
        changes = {k: v for k, v in r.overrides.items() if k in Params.names()}
        scen.setdefault(r.scenario, changes)
    if len(scen) > 1:
        lines = [
            f"- `{name}`: "
            + (
                "; ".join(
                    f"`{k}` = {v if not isinstance(v, list) else ', '.join(map(str, v))}"
                    for k, v in changes.items()
                )
                or "the definitions above"
            )
            for name, changes in scen.items()
        ]
        parts.append(
            "## Scenarios\n\nEach scenario changes the definitions above as listed; its "
            "estimate is in the batch index and in the run's report.\n\n" + "\n".join(lines)
        )
    sections["results"] = "\n\n".join(parts)
    doc = Methods(sections, title=f"Methods and results: batch {batch.name}")
    return doc


def _compares_practices(batch, runs) -> bool:
    """Whether a practices run of the batch pooled two practices or more (its released
    practices_pooled table says how many)."""
    import csv

    for r in runs:
        if r.notebook != "07_practices":
            continue
        f = batch.out / r.name / "tables" / "practices_pooled.csv"
        if f.is_file():
            with f.open(newline="", encoding="utf-8") as fh:
                if any(comparable(row.get("practices")) for row in csv.DictReader(fh)):
                    return True
    return False


def write_batch_methods_spec(spec: str) -> list[str]:
    """:func:`write_batch_methods` from its JSON description (the batch's name and folder,
    its runs' fields, the runs' statuses), as a batch's warm kernel is given it: the text
    is computed where the data's engine already runs (a Spark session), not in the batch's
    own process."""
    import json
    from types import SimpleNamespace

    raw = json.loads(spec)
    batch = SimpleNamespace(
        name=str(raw["name"]),
        out=Path(raw["out"]),
        runs=[SimpleNamespace(**r) for r in raw["runs"]],
    )
    return write_batch_methods(batch, list(raw["results"]))


def write_batch_methods(batch, results: list[dict]) -> list[str]:
    """``methods.md`` and ``methods.html`` in the batch folder (atomically); [] when no
    run succeeded."""

    doc = batch_methods(batch, results)
    if doc is None:
        return []
    body = doc.sections["results"]
    md = f"# {doc.title}\n\n{body}\n"
    atomic_write_text(batch.out / "methods.md", md, within=batch.out)
    page = Methods({}, title=doc.title)
    html = page.html(extra=body)
    atomic_write_text(batch.out / "methods.html", html, within=batch.out)
    return ["methods.md", "methods.html"]
