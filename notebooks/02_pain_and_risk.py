# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python (analysis)
#     language: python
#     name: analysis
# ---

# %% [markdown]
# # 02 Pain and risk
#
# The pain cohort in detail: how often each pain site is affected, how common each condition
# that makes long-term systemic NSAIDs unsafe is (the paper's "risk conditions"), and the
# risk drugs (antithrombotics, corticosteroids, SSRIs) that add to the bleeding risk of an
# NSAID; how the conditions co-occur; and who has one, by age and sex. These are the
# building blocks of the target subgroup of notebook 03.
#
# **Data.** By default the synthetic default cohort in `data/synthetic/` (not real
# patients). The heading under the next cell names the data, its size and the disclosure
# rule in force.
#
# **Run it on other data** by changing `data` below, or with papermill:
# `papermill notebooks/02_pain_and_risk.ipynb out.ipynb -p data path/to/extract`. The
# definitions (sites, severity, the code lists) are parameters; the methods below restate
# them in words for every run.

# %% tags=["parameters"]
# Parameters: the ones this notebook uses. Any other parameter of analysis.params.Params
# can be given with papermill (-p NAME VALUE) or in a YAML file named by params_file; a
# value here that differs from the default takes precedence over the file.
data = "data/synthetic"  # a contract folder or a database URL
output_dir = ""  # where tables and figures go; empty: reports/interactive/NOTEBOOK
params_file = ""  # a YAML file of further parameters
index_date = "2015-12-31"
lookback_years = 10
pain_sites = ["hip", "neck", "back", "knee"]
pain_causes = ["osteoarticular"]
min_severity = 4
risk_conditions = [
    "risk_condition_cardiovascular_disease",
    "risk_condition_heart_failure",
    "risk_condition_hypertension",
    "risk_condition_renal_impairment",
    "risk_condition_diabetes_mellitus",
    "risk_condition_gastrointestinal_disorders",
    "risk_condition_copd_asthma",
]
risk_drugs = ["risk_drug_antithrombotics", "risk_drug_corticosteroids", "risk_drug_ssri"]
age_band_edges = [45, 55, 65, 75]
confidence_level = 0.95
ci_method = "wilson"
disclosure = "auto"

# %%
from IPython.display import display

from analysis import notebook, plots, statistics

run = notebook.start(globals(), notebook="02_pain_and_risk", drug_counts=True)
study, cube = run.study, run.study.cube
run.header("Pain and risk conditions")

# %% [markdown]
# ## How this was computed
#
# The definitions, the code lists (with the digest of each file, so a reader can check
# which version was used) and the statistical methods, generated from this run's parameters.

# %%
run.methods()

# %% [markdown]
# ## Pain sites
#
# The share of the pain cohort with at least one qualifying episode at each site, with its
# interval for a proportion. A patient with pain at two sites counts at both, so the shares
# add up to more than 100%. The interval expresses sampling uncertainty only: it says
# nothing about how completely GPs record the site of pain.

# %%
sites = run.save_table(statistics.site_prevalence(cube), "site_prevalence")
display(run.manuscript_table(sites, "site_prevalence"))
run.show_figure(
    plots.proportion_forest(
        sites, "site", "Pain sites in the pain cohort", "% of the pain cohort", run.data_label
    ),
    "site_prevalence",
);

# %% [markdown]
# ## Risk conditions and risk drugs in the pain cohort
#
# Each row is one code list: the share of the pain cohort with a diagnosis (or a
# prescription) from that list on or before the index date. A condition is counted once
# however often it was recorded. Read a small share with its interval: with few patients
# the interval is wide, and a list that matched nothing may be a coding problem (see
# notebook 06, code-list coverage) rather than an absence of disease.

# %%
conds = run.save_table(statistics.condition_prevalence(cube), "condition_prevalence")
display(run.manuscript_table(conds, "condition_prevalence"))
run.show_figure(
    plots.proportion_forest(
        conds,
        "condition",
        "Risk conditions and risk drugs in the pain cohort",
        "% of the pain cohort",
        run.data_label,
        colour=plots.style.OKABE_ITO["vermillion"],
    ),
    "condition_prevalence",
);

# %% [markdown]
# ## Co-occurrence of risk conditions (UpSet)
#
# How many patients of the pain cohort have each combination of risk conditions (an UpSet
# plot: each column is one exact combination). It shows whether a handful of conditions
# (hypertension, for one) drive the target subgroup. Combinations held by too few patients
# are left out under disclosure control.

# %%
combos = run.save_table(statistics.condition_combinations(cube), "condition_combinations")
labels = [statistics.condition_label(c) for c in run.params.risk_conditions]
display(run.show(combos.head(15)))
run.show_figure(plots.upset(combos, labels, run.data_label), "condition_upset");

# %% [markdown]
# ## Table 1: the pain cohort against the rest
#
# The same Table 1 as notebook 01, here to read the risk conditions of the pain cohort
# against those of patients without qualifying pain. SMD: standardized mean difference.

# %%
t1 = run.save_table(statistics.table_one(cube), "table_one")
run.manuscript_table(t1, "table_one")

# %% [markdown]
# ## Who has a risk condition? Logistic regression in the pain cohort
#
# Odds ratios of having at least one risk condition by age band (against the youngest band)
# and sex, with their intervals. The method column says whether maximum likelihood or
# Firth's penalized likelihood was used (the latter when a cell is empty and the usual
# estimate does not exist). These are associations in this population, adjusted for each
# other only: they are not causal effects.

# %%
ors = run.save_table(statistics.risk_condition_regression(cube), "risk_condition_odds_ratios")
display(run.show(ors, index="term"))
run.show_figure(
    plots.odds_ratio_forest(ors, run.data_label, "Odds of a risk condition in the pain cohort"),
    "risk_condition_odds_ratios",
);

# %% [markdown]
# ## What disclosure control did
#
# `run.finish()` writes the run's figures (`results.csv`, read by `analysis combine` and
# the batch index) and what disclosure control did (`disclosure.json`): keep it last.

# %%
run.finish()
