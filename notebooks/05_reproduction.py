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
# # 05 Reproduction
#
# What this project reproduced of the paper, figure by figure, what it could not, and why.
# Two different questions are answered here. First, does the analysis give the published
# numbers when it runs on data built to match the paper (the synthetic default cohort)?
# On any other data, or under other definitions, the same table becomes a comparison with
# the paper: a difference is then a finding about those data, not a failure. Second, are the
# published numbers consistent with one another? That question needs no patient data at all:
# it is answered from the printed figures alone.
#
# **Data.** By default the synthetic default cohort in `data/synthetic/`, built to reproduce
# the published figures; the published figures are in `data/reference/published.csv`
# (`published` below names another file to audit another paper's figures).
#
# **Run it on your data** to compare them with the paper:
# `papermill notebooks/05_reproduction.ipynb out.ipynb -p data path/to/extract`.

# %% tags=["parameters"]
# Parameters: the ones this notebook uses. Any other parameter of analysis.params.Params
# can be given with papermill (-p NAME VALUE) or in a YAML file named by params_file.
data = "data/synthetic"  # a contract folder or a database URL
output_dir = ""  # where tables and figures go; empty: reports/interactive/NOTEBOOK
params_file = ""  # a YAML file of further parameters
published = ""  # a published-figures CSV; empty: data/reference/published.csv
index_date = "2015-12-31"
disclosure = "auto"

# %%
from html import escape

from IPython.display import Markdown

from analysis import audit, notebook

run = notebook.start(globals(), notebook="05_reproduction")
published = audit.load_published(notebook.resolve(published))
# another paper's figures, other data or other definitions: a comparison, not a reproduction
comparison = published != audit.load_published() or not audit.is_reproduction(
    run.params, run.study.is_synthetic
)
run.header("Compared with the paper" if comparison else "Reproduction of the published figures")

# %% [markdown]
# ## How this was computed

# %%
run.methods()

# %% [markdown]
# ## Published against recomputed
#
# Each figure of the paper (P1-P10), the value recomputed from the data and rounded to the
# published precision, their difference and a verdict. "reproduced" means equal at the
# printed precision, which is all a printed figure can be checked against. When this run is
# a comparison (other data, or other definitions), the verdicts read "same as the paper" or
# "different from the paper". A figure that is an assumption of the paper (the share that
# would benefit) cannot be computed from data.

# %%
repro = run.save_table(
    audit.reproduction_table(run.study.figures(), published, comparison=comparison),
    "reproduction",
)
run.show(repro.drop(columns=["description"]), index="id")

# %% [markdown]
# ## The arithmetic of the published figures
#
# These checks use the printed numbers only. GRIM (Brown and Heathers 2017) asks whether a
# count over its denominator can print as each percentage or mean; the cross-figure checks
# ask whether figures that describe the same patients agree; the SD bounds give the smallest
# and largest SD of integer ages compatible with n, the mean, the range and the subgroup
# counts the paper reports. An "impossible" verdict means no data could have produced the
# printed numbers together; it usually points to a typo or a different denominator, not to
# misconduct.

# %%
checks = run.save_table(audit.consistency_audit(published), "consistency_audit")
audit.audit_report(checks)

# %% [markdown]
# ## In words

# %%
Markdown(escape(audit.narrative(checks, repro), quote=False))

# %% [markdown]
# ## What disclosure control did
#
# `run.finish()` writes the run's figures (`results.csv`, read by `analysis combine` and
# the batch index) and what disclosure control did (`disclosure.json`): keep it last.

# %%
run.finish()
