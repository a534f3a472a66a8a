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
# # 03 Eligibility
#
# The paper's main estimate: how many patients could benefit from a local treatment
# (mesotherapy) because long-term systemic NSAIDs are unsafe for them. The path runs from
# all patients to the pain cohort, to the target subgroup (recurrent pain, elderly, with a
# risk condition or a risk drug), to the expected candidates: the target subgroup times the
# share expected to benefit. The result is given as a count, a share of all patients, a rate
# per 1000 and per GP list, each with an interval whose meaning is stated next to it.
#
# **Data.** By default the synthetic default cohort in `data/synthetic/` (not real
# patients); the heading under the next cell says which data and rule were used.
#
# **Run it on other data or assumptions** by changing the parameters below, or with
# papermill, e.g. `papermill notebooks/03_eligibility.ipynb out.ipynb -p elderly_age 80`.
# Notebook 04 varies the definitions and assumptions systematically.

# %% tags=["parameters"]
# Parameters: the ones this notebook uses most. Any other parameter of analysis.params.Params
# (pain sites and causes, code lists...) can be given with papermill (-p NAME VALUE) or in
# a YAML file named by params_file; a value here that differs from the default takes
# precedence over the file.
data = "data/synthetic"  # a contract folder or a database URL
output_dir = ""  # where tables and figures go; empty: reports/interactive/NOTEBOOK
params_file = ""  # a YAML file of further parameters
index_date = "2015-12-31"
lookback_years = 10
min_severity = 4
min_episodes = 2
elderly_age = 75
benefit_distribution = "fixed"  # fixed, uniform or beta
benefit_fraction = 0.5
benefit_low = 0.5
benefit_high = 1.0
gp_list_size = 1500
confidence_level = 0.95
ci_method = "wilson"
disclosure = "auto"

# %%
import pandas as pd
from IPython.display import display

from analysis import eligibility, notebook, plots

run = notebook.start(globals(), notebook="03_eligibility")
study = run.study
run.header("Eligibility for a local treatment")

# %% [markdown]
# ## How this was computed
#
# The population, each definition with its thresholds, and how the interval of the estimate
# is built, generated from this run's parameters; the results paragraph is ready to paste
# into a manuscript.

# %%
run.methods()

# %% [markdown]
# ## Attrition
#
# Each step with its count, the step it is drawn from and its share of that step. The steps
# form a tree, not a chain: the pain cohort with a risk condition and the target subgroup
# are both drawn from the pain cohort. Patients left out of the population (born after the
# index date, not registered in the window) are counted first. The last step is an
# expectation, not a count of patients.

# %%
attrition = run.save_table(study.attrition(), "attrition")
display(run.show(attrition, index="step"))
run.show_figure(plots.flow_diagram(attrition, run.data_label), "flow_diagram");

# %% [markdown]
# ## The eligibility estimate
#
# With the paper's assumption (a fixed share of 0.5, its "at least 50%") the estimate is a
# **lower bound**, and its interval is the interval of the target proportion times 0.5: it
# carries the sampling uncertainty only. With a benefit distribution
# (`benefit_distribution: uniform` or `beta` on `benefit_low`-`benefit_high`) the point is
# the expectation and the interval the exact quantiles of the product, so it carries both
# uncertainties.
#
# *Expected per GP list* is the expected number in a list of that size. The last row is a
# prediction interval for the count in one actual list, which also varies from list to list:
# do not read the interval of the expectation as the range of counts a single practice will
# see.

# %%
est = study.eligibility()
if est is None:
    print("The target subgroup is withheld by disclosure control: no estimate is shown.")
else:
    run.save_table(pd.DataFrame([est.as_dict()]), "eligibility_estimate")
    display(est)

# %% [markdown]
# ## The distribution behind the interval
#
# The distribution of the expected number of candidates per GP list, from which the interval
# above is read (its quantiles). Under a fixed benefit share it is the distribution of the
# target proportion scaled by the share; under a benefit distribution it is the product of
# the two, and its width shows how much each assumption adds.

# %%
if est is not None:
    dist = run.save_table(
        eligibility.eligibility_distribution(est, run.params), "eligibility_distribution"
    )
    run.show_figure(
        plots.eligibility_histogram(dist, est, run.data_label), "eligibility_distribution"
    )
else:
    print("Withheld with the target subgroup (disclosure control).")

# %% [markdown]
# ## What disclosure control did
#
# `run.finish()` writes the run's figures (`results.csv`, read by `analysis combine` and
# the batch index) and what disclosure control did (`disclosure.json`): keep it last.

# %%
run.finish()
