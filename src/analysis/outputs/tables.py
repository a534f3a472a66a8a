"""The project's output tables, declared once (see :mod:`analysis.outputs.registry`).

Importing this module declares them; the key figures shown by the batch index are here
too, next to the table they read.
"""

from __future__ import annotations

from analysis.eligibility import ESTIMATE_COLUMNS, INTERVAL_ESTIMATES, is_lower_bound
from analysis.outputs import disclosure as _d
from analysis.outputs.registry import TableSpec, declare
from analysis.practices import COLUMNS as PRACTICE_COLUMNS
from analysis.practices import ESTIMATES as PRACTICE_ESTIMATES
from analysis.practices import POOLED_COLUMNS, heterogeneity
from analysis.sensitivity import GRID_ESTIMATES as _GRID_ESTIMATES

PROPORTION = ("numerator", "denominator", "pct", "ci_low", "ci_high", "method", "level")
PROP_CI = (("ci_low", "ci_high", "numerator", "denominator"),)


def _num(v, digits=1) -> str:
    """A value read back from a CSV, formatted; 'withheld' when empty."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "withheld"
    if x != x:
        return "withheld"
    return f"{x:,.{digits}f}"


def _count(v) -> str:
    try:
        return f"{int(float(v)):,}"
    except (TypeError, ValueError):
        return "withheld"


def _interval(lo, hi, digits=1) -> str:
    a, b = _num(lo, digits), _num(hi, digits)
    return f"{a}-{b}" if "withheld" not in (a, b) else "interval withheld"


def _key_sex(rows):
    if not rows:
        return None
    f = next((r for r in rows if r.get("sex") == "female"), None)
    n = _count(f.get("denominator")) if f else "withheld"
    if f is None:
        return f"{n} patients"
    if _num(f["pct"]) == "withheld":
        return f"{n} patients; share of women withheld"
    return f"{n} patients; female {_num(f['pct'], 2)}% ({_interval(f['ci_low'], f['ci_high'], 2)})"


def _key_conditions(rows):
    r = next((x for x in rows if x.get("condition") == "any risk condition"), None)
    if r is None:
        return None
    if _num(r["pct"]) == "withheld":
        return f"pain cohort {_count(r.get('denominator'))}; share with a risk condition withheld"
    return (
        f"pain cohort {_count(r.get('denominator'))}; with a risk condition {_num(r['pct'])}% "
        f"({_interval(r['ci_low'], r['ci_high'])})"
    )


def _key_tornado(rows):
    if not rows:
        return None
    t = rows[0]
    if "withheld" in (_num(t["low_estimate"]), _num(t["high_estimate"])):
        return "swings withheld (the target subgroup is withheld in the cells)"
    return (
        f"largest swing: {t['parameter'].replace('_', ' ')} ({_num(t['low_estimate'])}-"
        f"{_num(t['high_estimate'])} per GP list; base {_num(t['base_estimate'])})"
    )


def _key_coverage(rows):
    r = next(
        (
            x
            for x in rows
            if x.get("table") == "diagnoses" and x.get("covered_by") == "any code list"
        ),
        None,
    )
    return f"{_num(r['pct'])}% of diagnosis records in a code list" if r else None


def _key_reproduction(rows):
    if not rows:
        return None
    ok = sum(r.get("verdict") == "reproduced" for r in rows)
    return f"{ok} of {len(rows)} published figures reproduced"


def _key_eligibility(rows):
    if not rows:
        return None
    e = rows[0]

    try:
        fraction = float(e.get("benefit_fraction"))
    except (TypeError, ValueError):
        fraction = None
    bound = "at least " if is_lower_bound(e.get("benefit_distribution"), fraction) else ""
    level = _num(float(e["level"]) * 100, 0)
    return (
        f"{bound}{_num(e['per_gp_list'])} expected per GP list of {_count(e['gp_list_size'])} "
        f"({level}% interval {_interval(e['per_gp_list_low'], e['per_gp_list_high'])}; one list: "
        f"{_interval(e.get('in_one_list_low'), e.get('in_one_list_high'), 0)}, {level}% "
        f"prediction); "
        f"{_num(e['candidates'])} candidates "
        f"({_interval(e['candidates_low'], e['candidates_high'])}), "
        f"{_num(e['pct_of_population'], 2)}% of all patients"
    )


# ----------------------------------------------------------------------------- 01 and 02
_ESTIMATES = INTERVAL_ESTIMATES
declare(
    TableSpec(
        "eligibility_estimate",
        columns=ESTIMATE_COLUMNS,
        counts={"target_n": "patients", "population_n": "patients"},
        derived={"target_n": _ESTIMATES},
        keys=("benefit_distribution", "ci_method", "model"),
        note="expected candidates (target x benefit) from the released (rounded) target and "
        "population "
        "counts; interval of the expectation and prediction interval for one GP list",
        key_figure=_key_eligibility,
    )
)
declare(
    TableSpec(
        "sex",
        columns=("sex",) + PROPORTION,
        counts={"numerator": "patients", "denominator": "patients"},
        derived={"numerator": ("pct", "ci_low", "ci_high")},
        keys=("sex", "method"),
        pct={"pct": ("numerator", "denominator")},
        ci=PROP_CI,
        partition=True,
        note="patients by sex; denominator: all patients",
        key_figure=_key_sex,
    )
)
declare(
    TableSpec(
        "age_summary",
        columns=(
            "group",
            "n",
            "mean",
            "sd",
            "min",
            "max",
            "median",
            "q1",
            "q3",
            "mean_ci_low",
            "mean_ci_high",
        ),
        counts={"n": "patients"},
        keys=("group",),
        derived={"n": ("mean", "sd")},
        withhold=("min", "max", "median", "q1", "q3", "mean_ci_low", "mean_ci_high"),
        round_to_decimals={"mean": 1, "sd": 1},
        partition=("group", ["sex=", "age "]),
        note="age in completed years at the index date (90 and over counted as 90), overall, by "
        "sex and by "
        "age band; n per group; extremes, quantiles (patients' own ages) and intervals of means "
        "withheld",
    )
)
declare(
    TableSpec(
        "age_sex_pyramid",
        columns=("age_group", "group_lo", "female", "male"),
        counts={"female": "patients", "male": "patients"},
        keys=("age_group", "group_lo"),
        partition=True,
        rows_exist_only_with_patients=True,
        top_code=("group_lo", 90, "90+"),
        note="patients by 5-year age group and sex (90+ as one group under a rule); partitions "
        "all patients",
    )
)
declare(
    TableSpec(
        "age_by_sex_counts",
        columns=("sex", "age", "n"),
        counts={"n": "patients"},
        keys=("sex", "age"),
        partition=True,
        rows_exist_only_with_patients=True,
        top_code=("age", 90, "90+"),
        note="patients by single year of age and sex (90+ as one row under a rule; rows of "
        "withheld "
        "counts dropped); partitions all patients",
    )
)
declare(
    TableSpec(
        "table_one",
        columns=(
            "variable",
            "kind",
            "pain_n",
            "rest_n",
            "smd",
            "pain_mean",
            "pain_sd",
            "pain_ci_low",
            "pain_ci_high",
            "rest_mean",
            "rest_sd",
            "rest_ci_low",
            "rest_ci_high",
            "pain_pct",
            "rest_pct",
        ),
        counts={"pain_n": "patients", "rest_n": "patients"},
        keys=("variable", "kind"),
        protector=_d.protect_table_one,
        note="pain cohort against the rest: counts (%), means (SD), SMD; denominators: the two "
        "groups "
        "(every statistic of a withheld group withheld; shares and SMDs from released counts)",
    )
)
declare(
    TableSpec(
        "site_prevalence",
        columns=("site",) + PROPORTION,
        counts={"numerator": "patients", "denominator": "patients"},
        derived={"numerator": ("pct", "ci_low", "ci_high")},
        keys=("site", "method"),
        pct={"pct": ("numerator", "denominator")},
        ci=PROP_CI,
        note="pain-cohort patients with a qualifying episode per site; "
        "denominator: the pain cohort",
    )
)
declare(
    TableSpec(
        "condition_prevalence",
        columns=("condition", "codelist") + PROPORTION,
        counts={"numerator": "patients", "denominator": "patients"},
        derived={"numerator": ("pct", "ci_low", "ci_high")},
        keys=("condition", "codelist", "method"),
        pct={"pct": ("numerator", "denominator")},
        ci=PROP_CI,
        note="pain-cohort patients per risk-condition group and risk drug; denominator: the pain "
        "cohort",
        key_figure=_key_conditions,
    )
)
declare(
    TableSpec(
        "condition_combinations",
        columns=("n", "n_conditions", "pct_of_pain"),
        counts={"n": "patients"},
        derived={"n": ("pct_of_pain",)},
        keys=("n_conditions",),
        pct={"pct_of_pain": ("n", "column_total")},
        partition=True,
        rows_exist_only_with_patients=True,
        extra_columns="labels",
        note="pain-cohort patients per exact combination of risk groups (one yes/no column per "
        "group); "
        "partitions the pain cohort; combinations of withheld counts left out, their number said",
    )
)
declare(
    TableSpec(
        "risk_condition_odds_ratios",
        columns=("term", "odds_ratio", "ci_low", "ci_high", "p_value", "method"),
        keys=("term", "method"),
        protector=_d.protect_regression,
        note="logistic regression (grouped binomial) of a risk condition in the pain cohort on "
        "age band "
        "and sex; under a rule fitted on the released (rounded) cell counts, terms of small "
        "groups withheld",
    )
)

# ----------------------------------------------------------------------------- 03 and 04
declare(
    TableSpec(
        "attrition",
        columns=("step", "definition", "n", "previous_step", "pct_of_previous", "pct_of_all"),
        counts={"n": "patients"},
        keys=("step", "definition", "previous_step"),
        protector=_d.protect_attrition,
        note="all patients -> pain cohort -> risk condition / target -> candidates; each share of "
        "the "
        "step it is drawn from, from released counts",
    )
)
declare(
    TableSpec(
        "eligibility_distribution",
        columns=("per_gp_list_from", "per_gp_list_to", "probability"),
        note="distribution of the expected candidates per GP list under the model, from the "
        "released counts",
    )
)
declare(
    TableSpec(
        "sensitivity_grid",
        columns=("is_base", "population_n", "pain_n", "target_n", "benefit_used", "interval")
        + _GRID_ESTIMATES,
        counts={"population_n": "patients", "pain_n": "patients", "target_n": "patients"},
        derived={"target_n": _GRID_ESTIMATES, "pain_n": (), "population_n": ()},
        keys=("interval",),
        extra_columns="labels",
        note="target counts and estimates per grid cell (from released counts); one column per "
        "varied parameter",
    )
)
declare(
    TableSpec(
        "tornado",
        columns=(
            "parameter",
            "base_value",
            "base_estimate",
            "low_value",
            "low_estimate",
            "high_value",
            "high_estimate",
            "swing",
            "withheld_values",
        ),
        keys=("parameter", "base_value", "low_value", "high_value", "withheld_values"),
        note="one-at-a-time ranges of the estimate per GP list (from the released grid)",
        key_figure=_key_tornado,
    )
)
declare(
    TableSpec(
        "heatmap_elderly_age_benefit",
        columns=("elderly_age",),
        keys=("elderly_age",),
        extra_columns="estimates",
        note="estimate per GP list per cell (elderly age x benefit fraction), from the released "
        "grid",
    )
)

# ----------------------------------------------------------------------------- 05 and 06
declare(
    TableSpec(
        "reproduction",
        columns=(
            "id",
            "figure",
            "description",
            "published",
            "unit",
            "recomputed",
            "difference",
            "verdict",
        ),
        keys=("id", "figure", "description", "published", "unit", "verdict"),
        note="published against recomputed figures (recomputed: the released figures)",
        key_figure=_key_reproduction,
    )
)
declare(
    TableSpec(
        "consistency_audit",
        columns=("check", "figures", "method", "reference", "result", "verdict", "arithmetic"),
        keys=("check", "figures", "method", "reference", "result", "verdict", "arithmetic"),
        note="arithmetic of the published figures (no patient data)",
    )
)
declare(
    TableSpec(
        "completeness",
        columns=("table", "column", "records", "with_value", "pct_complete"),
        counts={"records": "records", "with_value": "records"},
        keys=("table", "column"),
        derived={"with_value": ("pct_complete",)},
        pct={"pct_complete": ("with_value", "records")},
        note="records with a value per column (records of the patients table are patients)",
    )
)
declare(
    TableSpec(
        "plausibility",
        columns=("table", "check", "records", "patients", "pct"),
        counts={"records": "records:patients", "patients": "patients"},
        keys=("table", "check"),
        derived={"patients": ("records", "pct")},
        pct={"pct": ("records", "from_pct")},
        note="records (and distinct patients) per data-quality check; % of the table's records",
    )
)
declare(
    TableSpec(
        "duplicates",
        columns=("table", "records", "exact_duplicates", "patients", "pct"),
        counts={
            "records": "records",
            "exact_duplicates": "records:patients",
            "patients": "patients",
        },
        keys=("table",),
        derived={"patients": ("exact_duplicates", "pct")},
        pct={"pct": ("exact_duplicates", "records")},
        note="exact duplicate records per table, and the patients they belong to",
    )
)
declare(
    TableSpec(
        "code_coverage",
        columns=("table", "covered_by", "records", "matched", "pct"),
        counts={"records": "records", "matched": "records"},
        keys=("table", "covered_by"),
        derived={"matched": ("pct",)},
        pct={"pct": ("matched", "records")},
        note="records matched by the code lists",
        key_figure=_key_coverage,
    )
)
declare(
    TableSpec(
        "unmatched_codes",
        columns=("code", "patients", "records"),
        counts={"patients": "patients", "records": "records:patients"},
        keys=("code",),
        rows_exist_only_with_patients=True,
        note="diagnosis codes in no code list, with the patients and records per code; a code of "
        "fewer "
        "patients than the threshold is left out (its existence is disclosive) and the number "
        "left out said",
    )
)


def _key_pooled(rows):
    r = rows[0] if rows else None
    if not r or not r.get("estimate"):
        return None
    return (
        f"pooled target {_num(float(r['estimate']), 2)}% ({_num(float(r['ci_low']), 2)}-"
        f"{_num(float(r['ci_high']), 2)}) over {r['practices']} practices; "
        + heterogeneity(r.get("tau2"), r.get("i2"), r["practices"])
    )


declare(
    TableSpec(
        "practices",
        columns=PRACTICE_COLUMNS,
        counts={"population_n": "patients", "pain_n": "patients", "target_n": "patients"},
        derived={"target_n": PRACTICE_ESTIMATES, "population_n": PRACTICE_ESTIMATES},
        keys=("practice_id",),
        pct={"target_pct": ("target_n", "population_n")},
        ci=(("ci_low", "ci_high", "target_n", "population_n"),),
        rows_exist_only_with_patients=True,
        note="per practice: population, pain cohort and target subgroup (released counts), the "
        "target share of the population with its interval and the expected candidates per GP "
        "list; a practice with a withheld count is left out and counted",
    )
)
declare(
    TableSpec(
        "practices_pooled",
        columns=POOLED_COLUMNS,
        keys=("method",),
        extra_columns=None,
        note="random-effects pool of the released practices' target proportions (logit scale; "
        "percent), tau^2, I^2 and the prediction interval for a new practice; practices left "
        "out by disclosure control are counted, not pooled",
        key_figure=_key_pooled,
    )
)

KEY_FIGURE_ORDER = (
    "eligibility_estimate",
    "practices_pooled",
    "sex",
    "condition_prevalence",
    "tornado",
    "code_coverage",
    "reproduction",
)
