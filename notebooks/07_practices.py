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
# # 07 Practices
#
# The paper speaks of "a GP list of 1500": one practice. A network of practices sees more:
# every practice's own estimate, how much practices differ beyond what chance alone would
# give, and a pooled estimate whose interval admits that difference. This notebook shows the
# target subgroup (recurrent pain, elderly, with a risk condition or a risk drug) per
# practice, a funnel plot that flags practices whose share is unusual for their size, a forest
# plot with the pooled estimate and the range a new practice could show, and the paper's
# "candidates per GP list" as a distribution across practices instead of a single figure.
#
# **Data.** By default the synthetic default cohort in `data/synthetic/`, a single practice:
# there is then nothing to compare or pool; the notebook says so once and its report leaves
# out the comparison sections. `batches/practices.yaml` runs it on
# a synthetic network of 20 practices (`make network`).
#
# **Run it on your network**:
# `papermill notebooks/07_practices.ipynb out.ipynb -p data path/to/extract`.

# %% tags=["parameters"]
# Parameters: the ones this notebook uses. Any other parameter of analysis.params.Params
# can be given with papermill (-p NAME VALUE) or in a YAML file named by params_file.
data = "data/synthetic"  # a contract folder or a database URL
output_dir = ""  # where tables and figures go; empty: reports/interactive/NOTEBOOK
params_file = ""  # a YAML file of further parameters
index_date = "2015-12-31"
min_episodes = 2
elderly_age = 75
gp_list_size = 1500
confidence_level = 0.95
ci_method = "wilson"
pool_method = "dl"  # dl, reml or fixed
disclosure = "auto"

# %%
from IPython.display import display

from analysis import notebook, plots, practices

run = notebook.start(globals(), notebook="07_practices", by_practice=True)
study = run.study
run.header("Practices")

# %% [markdown]
# ## How this was computed
#
# How practices are counted, how they are pooled and what the funnel limits are, generated
# from this run's parameters.

# %%
run.methods()

# %% [markdown] tags=["compare"]
# ## Practices
#
# One row per practice: its population, pain cohort and target subgroup, the target share of
# its population with the interval of a proportion, and its expected candidates per GP list
# with the eligibility interval. Small practices have wide intervals: do not rank practices
# by their point estimates. A practice with a count below the disclosure threshold is left
# out of this table, the plots and the pool, with as many others as it takes so that the
# network's totals minus this table do not give it back; the number left out is said below.

# %%
table, left_out = practices.practice_table(study)
table = run.save_table(table, "practices")
if left_out:
    print(f"{left_out} practice(s) left out by disclosure control.")
pooled = practices.pooled_table(table, left_out, run.params)
pooled = run.save_table(pooled, "practices_pooled")
run.record_practices(table, pooled.iloc[0].to_dict() if len(pooled) else None)
compare = run.compare_practices(table, left_out)  # two or more practices, or says why not
if compare:
    display(run.show(table, index="practice_id"))

# %% [markdown] tags=["compare"]
# ## The pooled estimate
#
# A random-effects meta-analysis of the practices' target shares on the logit scale (the
# method is named in the table). The interval is that of the pooled mean; tau² is the
# variance between practices on the logit scale and I² the share of the variation that is
# beyond chance. The prediction interval is the range expected for a new practice of the
# network: it is the honest answer to "how many candidates will my practice have?", and it is
# wider than the interval of the mean whenever practices differ.

# %% tags=["compare"]
if compare:
    display(run.show(pooled))

# %% [markdown] tags=["compare"]
# ## Funnel plot
#
# Each practice's target share against its size, with control limits around the network's
# share: 95% of practices should lie inside the dashed lines and 99.8% inside the solid ones
# if they differed by chance alone (Spiegelhalter 2005). Practices outside the 99.8% limits
# are labelled; a point outside is a reason to look at that practice's data and population,
# not a verdict on its care.

# %% tags=["compare"]
if compare:
    run.show_figure(plots.funnel(table, pooled, run.data_label, left_out), "funnel")

# %% [markdown] tags=["compare"]
# ## Forest plot
#
# Practices ordered by their share, each with its interval; the diamond is the pooled
# estimate and the line through it the prediction interval for a new practice.

# %% tags=["compare"]
if compare:
    run.show_figure(plots.practice_forest(table, pooled, run.data_label), "practice_forest")

# %% [markdown] tags=["compare"]
# ## Candidates per GP list across practices
#
# The paper's single "per GP list" figure becomes a distribution: the expected candidates per
# list of `gp_list_size` patients in each practice. The spread is what a network planning a
# service must budget for.

# %% tags=["compare"]
if compare:
    run.show_figure(
        plots.per_list_across_practices(table, run.data_label, run.params.gp_list_size),
        "per_list_across_practices",
    )

# %% [markdown]
# ## What disclosure control did
#
# `run.finish()` writes the run's figures (`results.csv`, read by `analysis combine` and
# the batch index) and what disclosure control did (`disclosure.json`): keep it last.

# %%
run.finish()
