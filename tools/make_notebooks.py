"""Write the notebooks from their cell sources (kept here so they are reviewed as code).

Run: python tools/make_notebooks.py  (stores notebooks without outputs)
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from analysis.params import Params  # noqa: E402

D = Params()


def lit(v):
    if isinstance(v, tuple):
        v = list(v)
    return repr(v)


def param_cell(names, extra):
    lines = [
        "# Parameters (papermill: -p NAME VALUE or -f params.yaml). Literal defaults only:",
        "# they are the shared parameter set's defaults (analysis.params.Params).",
    ]
    for k, v in extra.items():
        lines.append(f"{k} = {lit(v)}")
    for n in names:
        lines.append(f"{n} = {lit(getattr(D, n))}")
    c = new_code_cell("\n".join(lines))
    c.metadata["tags"] = ["parameters"]
    return c


def header(title, what, nb):
    return new_markdown_cell(
        f"# {title}\n\n{what}\n\n"
        "**Data**: by default the synthetic default cohort in `data/synthetic/` (built by "
        "`make data`); the title of every table and figure below says which data it shows "
        "and its n.\n\n"
        "**Run it for other data**: change `data` in the parameters cell to a folder in the "
        "data contract (see `data/README.md`), or run it with papermill:\n\n"
        f"```\npapermill notebooks/{nb}.ipynb out.ipynb -p data path/to/extract -p output_dir "
        f"reports/mine\n```\n\n"
        "Every number is computed by the `analysis` package; this notebook only chooses "
        "parameters and shows the results."
    )


RUN = {"data": "data/synthetic", "output_dir": ""}
COHORT = [
    "index_date",
    "lookback_years",
    "pain_sites",
    "pain_causes",
    "min_severity",
    "risk_conditions",
    "risk_drugs",
    "min_episodes",
    "elderly_age",
    "confidence_level",
    "ci_method",
    "age_band_edges",
    "disclosure",
    "disclosure_threshold",
    "disclosure_rounding",
]
ELIG = [
    "benefit_fraction",
    "benefit_low",
    "benefit_high",
    "benefit_distribution",
    "benefit_beta_a",
    "benefit_beta_b",
    "gp_list_size",
    "monte_carlo_draws",
    "seed",
]


def nb01():
    return [
        header(
            "01 Cohort profile",
            "The study population: size, Table 1 of the pain cohort "
            "against the rest, age and sex with confidence intervals, the age-sex pyramid "
            "and the age distribution by sex.",
            "01_cohort_profile",
        ),
        param_cell(
            [
                "index_date",
                "confidence_level",
                "ci_method",
                "age_band_edges",
                "elderly_age",
                "disclosure",
                "disclosure_threshold",
                "disclosure_rounding",
            ],
            RUN,
        ),
        new_code_cell(
            "from analysis import notebook, plots, statistics\n\n"
            "run = notebook.start(globals(), notebook='01_cohort_profile', drug_counts=True)\n"
            "study, cube = run.study, run.study.cube\n"
            "run.header('Cohort profile')"
        ),
        new_markdown_cell("### Population: size, age and sex"),
        new_code_cell(
            "ages = run.save_table(statistics.age_table(cube), 'age_summary')\n"
            "sexes = run.save_table(statistics.sex_table(cube), 'sex')\n"
            "display(run.show(ages, 'group'))\n"
            "run.show(sexes, 'sex')"
        ),
        new_markdown_cell(
            "### Table 1: pain cohort against the rest of the population\n\n"
            "Counts with %; ages and number of drugs as mean (SD); SMD: standardized "
            "mean difference (Austin 2009). The saved table (`tables/table_one.csv`) "
            "also holds the 95% CIs."
        ),
        new_code_cell(
            "t1 = run.save_table(statistics.table_one(cube), 'table_one')\n"
            "run.show(statistics.table_one_formatted(t1), 'variable')"
        ),
        new_markdown_cell("### Age-sex pyramid"),
        new_code_cell(
            "pyramid = run.save_table(statistics.age_sex_counts(cube), 'age_sex_pyramid')\n"
            "run.show_figure(plots.age_sex_pyramid(pyramid, run.data_label), 'age_sex_pyramid');"
        ),
        new_markdown_cell("### Age distribution by sex"),
        new_code_cell(
            "by_age = run.save_table(statistics.age_by_sex_counts(cube), 'age_by_sex_counts')\n"
            "run.show_figure(plots.age_distribution_by_sex(by_age, ages, run.data_label), "
            "'age_distribution_by_sex');"
        ),
    ]


def nb02():
    return [
        header(
            "02 Pain and risk",
            "The pain cohort: prevalence of each pain site, of each risk "
            "condition and risk drug with confidence intervals, how risk conditions co-occur, "
            "Table 1 against the rest of the population, and a logistic regression of having "
            "a risk condition on age band and sex.",
            "02_pain_and_risk",
        ),
        param_cell(COHORT, RUN),
        new_code_cell(
            "from analysis import notebook, plots, statistics\n\n"
            "run = notebook.start(globals(), notebook='02_pain_and_risk', drug_counts=True)\n"
            "study, cube = run.study, run.study.cube\n"
            "run.header('Pain and risk conditions')"
        ),
        new_markdown_cell(
            "### Pain sites\n\nShare of the pain cohort with a qualifying episode "
            "at each site (a patient can have several)."
        ),
        new_code_cell(
            "sites = run.save_table(statistics.site_prevalence(cube), 'site_prevalence')\n"
            "display(run.show(sites, 'site'))\n"
            "run.show_figure(plots.proportion_forest(sites, 'site', 'Pain sites in the pain "
            "cohort',\n"
            "    '% of the pain cohort', run.data_label), 'site_prevalence');"
        ),
        new_markdown_cell("### Risk conditions and risk drugs in the pain cohort"),
        new_code_cell(
            "conds = run.save_table(statistics.condition_prevalence(cube), "
            "'condition_prevalence')\n"
            "display(run.show(conds.drop(columns='codelist'), 'condition'))\n"
            "run.show_figure(plots.proportion_forest(conds, 'condition',\n"
            "    'Risk conditions and risk drugs in the pain cohort', '% of the pain cohort',\n"
            "    run.data_label, colour=plots.style.OKABE_ITO['vermillion']), "
            "'condition_prevalence');"
        ),
        new_markdown_cell("### Co-occurrence of risk conditions (UpSet)"),
        new_code_cell(
            "combos = run.save_table(statistics.condition_combinations(cube), "
            "'condition_combinations')\n"
            "labels = [statistics.condition_label(c) for c in run.params.risk_conditions]\n"
            "display(run.show(combos.head(15)))\n"
            "run.show_figure(plots.upset(combos, labels, run.data_label), 'condition_upset');"
        ),
        new_markdown_cell("### Table 1: pain cohort against the rest"),
        new_code_cell(
            "t1 = run.save_table(statistics.table_one(cube), 'table_one')\n"
            "run.show(statistics.table_one_formatted(t1), 'variable')"
        ),
        new_markdown_cell("### Who has a risk condition? Logistic regression in the pain cohort"),
        new_code_cell(
            "ors = run.save_table(statistics.risk_condition_regression(cube), "
            "'risk_condition_odds_ratios')\n"
            "display(run.show(ors, 'term'))\n"
            "run.show_figure(plots.odds_ratio_forest(ors, run.data_label,\n"
            "    'Odds of a risk condition in the pain cohort'), 'risk_condition_odds_ratios');"
        ),
    ]


def nb03():
    return [
        header(
            "03 Eligibility",
            "From all patients to candidates for a local treatment "
            "(mesotherapy): the attrition as a flow diagram, the eligibility estimate with its "
            "interval as a count, a percentage and per GP list, and the distribution behind "
            "the interval.",
            "03_eligibility",
        ),
        param_cell(COHORT + ELIG, RUN),
        new_code_cell(
            "from analysis import eligibility, notebook, plots\n\n"
            "run = notebook.start(globals(), notebook='03_eligibility')\n"
            "study = run.study\n"
            "run.header('Eligibility for a local treatment')"
        ),
        new_markdown_cell("### Attrition"),
        new_code_cell(
            "attrition = run.save_table(study.attrition(), 'attrition')\n"
            "display(run.show(attrition, 'step'))\n"
            "run.show_figure(plots.flow_diagram(attrition, run.data_label), 'flow_diagram');"
        ),
        new_markdown_cell(
            "### The eligibility estimate\n\n"
            "Expected candidates = target subgroup x the share that would benefit. With the "
            'paper\'s assumption (a fixed share of 0.5, its "at least 50%") the estimate is a '
            "**lower bound**, and its interval is the chosen interval of the target proportion "
            "(Wilson by default) times 0.5: it carries the sampling uncertainty only. With a "
            "benefit distribution (`benefit_distribution: uniform` or `beta` on "
            "`benefit_low`-`benefit_high`) the point is the expectation and the interval the exact "
            "quantiles of the product, so it carries both uncertainties.\n\n"
            "*Per GP list* is the expected number per list of that size; the last row is the "
            "prediction interval for the count in one actual list, which also varies from list to "
            "list. Do not read the interval of the expectation as the range of counts a single "
            "practice will see."
        ),
        new_code_cell(
            "est = study.eligibility()\n"
            "import pandas as pd\n"
            "if est is None:\n"
            "    print('The target subgroup is below the disclosure threshold: no estimate is "
            "shown.')\n"
            "else:\n"
            "    run.save_table(pd.DataFrame([est.as_dict()]), 'eligibility_estimate')\n"
            "    summary = pd.DataFrame({\n"
            "        'estimate': [est.candidates, est.pct_of_population, est.per_1000, "
            "est.per_gp_list, est.per_gp_list],\n"
            "        'low': [est.candidates_low, est.pct_low, est.per_1000_low, "
            "est.per_gp_list_low, est.in_one_list_low],\n"
            "        'high': [est.candidates_high, est.pct_high, est.per_1000_high, "
            "est.per_gp_list_high, est.in_one_list_high],\n"
            "        'interval': ['of the expectation'] * 4 + ['prediction, one list'],\n"
            "    }, index=['candidates in the database', '% of all patients', 'per 1000 "
            "patients',\n"
            "              f'expected per GP list of {est.gp_list_size}', f'in one actual list of "
            "{est.gp_list_size}'])\n"
            "    print(f'Model: {est.model}.')\n"
            "    display(run.show(summary.rename_axis('expected candidates').reset_index(), "
            "'expected candidates'))"
        ),
        new_markdown_cell("### The distribution behind the interval"),
        new_code_cell(
            "if est is not None:\n"
            "    dist = run.save_table(eligibility.eligibility_distribution(est, run.params), "
            "'eligibility_distribution')\n"
            "    run.show_figure(plots.eligibility_histogram(dist, est, run.data_label), "
            "'eligibility_distribution');\n"
            "else:\n"
            "    print('Withheld: the target subgroup is below the disclosure threshold.')"
        ),
    ]


def nb04():
    return [
        header(
            "04 Sensitivity",
            "How the eligibility estimate depends on the definitions and "
            "the benefit assumption: the whole grid as one table, a tornado chart of "
            "one-at-a-time ranges, and a heatmap of elderly age threshold x benefit fraction.",
            "04_sensitivity",
        ),
        param_cell(COHORT + ELIG, {**RUN, "grid": ""}),
        new_code_cell(
            "from analysis import notebook, plots, sensitivity\n\n"
            "run = notebook.start(globals(), notebook='04_sensitivity', study=False)\n"
            "g = sensitivity.load_grid(notebook.resolve(grid))\n"
            "db = run.open_database()\n"
            "cube = sensitivity.grid_cube(db, run.params, g)\n"
            "db.close()\n"
            "label = run.cube_label(cube)\n"
            "print(f'Sensitivity grid {g.source}: {g.size} cells; data: {label}')"
        ),
        new_markdown_cell("### The grid"),
        new_code_cell(
            "table = run.save_table(sensitivity.sensitivity_table(cube, g, run.params, "
            "rule=run.rule),\n"
            "                       'sensitivity_grid')\n"
            "run.show(table)"
        ),
        new_markdown_cell("### Which assumption moves the estimate most"),
        new_code_cell(
            "tor = run.save_table(sensitivity.tornado_table(table, g, run.params), 'tornado')\n"
            "display(run.show(tor, 'parameter'))\n"
            "run.show_figure(plots.tornado(tor, label), 'tornado');"
        ),
        new_markdown_cell("### Elderly age threshold x benefit fraction"),
        new_code_cell(
            "heat = sensitivity.heatmap_table(table, g, run.params, 'elderly_age', "
            "'benefit_fraction')\n"
            "heat = run.save_table(heat.reset_index(), "
            "'heatmap_elderly_age_benefit').set_index('elderly_age')\n"
            "run.show_figure(plots.heatmap(heat, label, 'benefit fraction', 'elderly age "
            "threshold (years)',\n"
            "    'Expected candidates per GP list'), 'heatmap_elderly_age_benefit');"
        ),
    ]


def nb05():
    return [
        header(
            "05 Reproduction",
            "What this project reproduced of the paper, figure by figure, "
            "and what it could not, and why: the published figures against the recomputed ones, "
            "and an audit of the arithmetic of the published figures themselves (GRIM, "
            "cross-figure agreement, exact SD bounds).",
            "05_reproduction",
        ),
        param_cell(COHORT + ELIG, {**RUN, "published": ""}),
        new_code_cell(
            "from analysis import audit, notebook\n\n"
            "run = notebook.start(globals(), notebook='05_reproduction')\n"
            "published = audit.load_published(notebook.resolve(published))\n"
            "run.header('Reproduction of the published figures')"
        ),
        new_markdown_cell(
            "### Published against recomputed\n\n"
            "Each figure of the paper (P1-P10, `data/reference/published.csv`), the "
            "value recomputed from the data at the published precision, and a verdict."
        ),
        new_code_cell(
            "repro = run.save_table(audit.reproduction_table(run.study.figures(), published), "
            "'reproduction')\n"
            "run.show(repro.drop(columns=['description']), 'id')"
        ),
        new_markdown_cell(
            "### The arithmetic of the published figures\n\n"
            "These checks use the printed numbers only, no patient data. GRIM (Brown and "
            "Heathers 2016) asks whether a count over its denominator can print as each "
            "percentage or mean; the cross-figure checks ask whether figures that "
            "describe the same patients agree; the SD bounds give the smallest and "
            "largest SD of integer ages compatible with n, the mean, the range and the "
            "subgroup counts the paper reports."
        ),
        new_code_cell(
            "checks = run.save_table(audit.consistency_audit(published), 'consistency_audit')\n"
            "run.show(checks[['check', 'figures', 'result', 'verdict']], 'check')"
        ),
        new_code_cell(
            "from html import escape\n"
            "from IPython.display import Markdown\n"
            "Markdown(escape(audit.narrative(checks, repro), quote=False))"
        ),
    ]


def nb06():
    return [
        header(
            "06 Data quality",
            "Before trusting the analysis: completeness of every column, "
            "values that are allowed but implausible, duplicate records, events outside the "
            "patients' registration or after the index date, and how much of the recorded codes "
            "the code lists cover. The database has passed the contract's validation already.",
            "06_data_quality",
        ),
        param_cell(
            [
                "index_date",
                "lookback_years",
                "risk_conditions",
                "risk_drugs",
                "disclosure",
                "disclosure_threshold",
                "disclosure_rounding",
            ],
            RUN,
        ),
        new_code_cell(
            "from analysis import notebook, quality\n\n"
            "run = notebook.start(globals(), notebook='06_data_quality')\n"
            "db = run.open_database()\n"
            "run.header('Data quality')"
        ),
        new_markdown_cell("### Completeness"),
        new_code_cell(
            "comp = run.save_table(quality.completeness(db), 'completeness')\nrun.show(comp)"
        ),
        new_markdown_cell("### Implausible values and events outside registration"),
        new_code_cell(
            "plaus = run.save_table(quality.plausibility(db, run.params), 'plausibility')\n"
            "run.show(plaus)"
        ),
        new_markdown_cell("### Duplicate records"),
        new_code_cell(
            "dups = run.save_table(quality.duplicates(db), 'duplicates')\nrun.show(dups)"
        ),
        new_markdown_cell(
            "### Code-list coverage\n\nShare of records whose code is in a code list; "
            "the most frequent diagnosis codes that no list matches (check that none "
            "of them should be a risk condition)."
        ),
        new_code_cell(
            "cov = run.save_table(quality.code_coverage(db, run.params), 'code_coverage')\n"
            "display(run.show(cov))\n"
            "unmatched = run.save_table(quality.unmatched_codes(db), 'unmatched_codes')\n"
            "db.close()\n"
            "run.show(unmatched)"
        ),
    ]


NOTEBOOKS = {
    "01_cohort_profile": nb01,
    "02_pain_and_risk": nb02,
    "03_eligibility": nb03,
    "04_sensitivity": nb04,
    "05_reproduction": nb05,
    "06_data_quality": nb06,
}


def main():
    for name, make in NOTEBOOKS.items():
        cells = make()
        cells.append(new_code_cell("run.disclosure_summary()"))
        nb = new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {
            "name": "analysis",
            "display_name": "Python (analysis)",
            "language": "python",
        }
        nb.metadata["language_info"] = {"name": "python"}
        for i, c in enumerate(nb.cells):
            c["id"] = f"{name[:2]}-{i:02d}"
        nbformat.write(nb, ROOT / "notebooks" / f"{name}.ipynb")
        print("wrote", name)


if __name__ == "__main__":
    main()
