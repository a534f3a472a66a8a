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
# # 01 Cohort profile
#
# Who is in the study: how many patients the population holds, their age and sex, and how
# the pain cohort (patients with at least one qualifying episode of osteo-articular pain)
# differs from the rest of the population. The paper reports the population's size, age and
# sex; this notebook adds the intervals and the comparison a reader needs to judge them.
#
# **Data.** By default the synthetic default cohort in `data/synthetic/` (`make data`), built
# to reproduce the paper's figures; it is not real patients. The heading under the next cell
# says which data were used, their size and the disclosure rule in force.
#
# **Run it on other data** by changing `data` below to a folder in the data contract
# (`data/README.md`) or a database URL, or with papermill:
# `papermill notebooks/01_cohort_profile.ipynb out.ipynb -p data path/to/extract`.
# Every number comes from the `analysis` package; this notebook chooses parameters and shows
# the results.

# %% tags=["parameters"]
# Parameters: the ones this notebook uses. Any other parameter of analysis.params.Params
# can be given with papermill (-p NAME VALUE) or in a YAML file named by params_file; a
# value here that differs from the default takes precedence over the file.
data = "data/synthetic"  # a contract folder or a database URL
output_dir = ""  # where tables and figures go; empty: reports/interactive/NOTEBOOK
params_file = ""  # a YAML file of further parameters
index_date = "2015-12-31"
lookback_years = 10
population = "registered_in_window"
pain_sites = ["hip", "neck", "back", "knee"]
min_severity = 4
age_band_edges = [45, 55, 65, 75]
elderly_age = 75
confidence_level = 0.95
ci_method = "wilson"
disclosure = "auto"

# %%
from IPython.display import display

from analysis import notebook, plots, statistics

run = notebook.start(globals(), notebook="01_cohort_profile", drug_counts=True)
study, cube = run.study, run.study.cube
run.header("Cohort profile")

# %% [markdown]
# ## How this was computed
#
# The methods as a paper would print them, generated from this run's parameters and data
# (so they change when the parameters change); `python -m analysis methods` prints the whole
# text.

# %%
run.methods()

# %% [markdown]
# ## Population: size, age and sex
#
# Age is in completed years on the index date. The first table gives the mean age with its
# SD and a t interval of the mean (how precisely the mean is known, not the spread of ages),
# the median and quartiles. The second gives each sex with the share of the population and
# its interval for a proportion (the method is named in the methods above). Under disclosure
# control extremes and quantiles are withheld and means rounded, because an exact mean of
# integer ages can reveal the size of a small group.

# %%
ages = run.save_table(statistics.age_table(cube), "age_summary")
sexes = run.save_table(statistics.sex_table(cube), "sex")
display(run.show(ages, index="group"))
run.show(sexes, index="sex")

# %% [markdown]
# ## Table 1: the pain cohort against the rest of the population
#
# Counts with their percentage of the column; age and number of drugs as mean (SD). The SMD
# (standardized mean difference; Austin 2009) compares the two groups on a scale free of
# the sample size: values above about 0.1 are usually read as a meaningful imbalance. No
# p-values are shown: the groups are described, not tested. The table is also written for a
# manuscript as `tables/table_one.docx` and `.xlsx`; the CSV holds the intervals as well.

# %%
t1 = run.save_table(statistics.table_one(cube), "table_one")
run.manuscript_table(t1, "table_one")

# %% [markdown]
# ## Age-sex pyramid
#
# Patients by age band and sex; the bands start at the ages of `age_band_edges`. A band that
# is withheld under disclosure control shows a note instead of a bar.

# %%
pyramid = run.save_table(statistics.age_sex_counts(cube), "age_sex_pyramid")
run.show_figure(plots.age_sex_pyramid(pyramid, run.data_label), "age_sex_pyramid");

# %% [markdown]
# ## Age distribution by sex
#
# The number of patients at each year of age, by sex, with each sex's mean age marked.
# Under disclosure control ages of 90 and over are shown as one "90+" group and single years
# with too few patients are left out (the summary at the end counts them).

# %%
by_age = run.save_table(statistics.age_by_sex_counts(cube), "age_by_sex_counts")
run.show_figure(
    plots.age_distribution_by_sex(by_age, ages, run.data_label), "age_distribution_by_sex"
);

# %% [markdown]
# ## What disclosure control did
#
# For each table: how many cells were withheld and how many rows left out, and why.
# `run.finish()` writes the run's figures (`results.csv`, read by `analysis combine` and
# the batch index) and what disclosure control did (`disclosure.json`): keep it last.

# %%
run.finish()
