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
# # 06 Data quality
#
# Before trusting any estimate: is the database complete, plausible and coded the way the
# code lists expect? The database has already passed the data contract's validation (types,
# allowed values, references between tables); this notebook looks for what a contract cannot
# forbid: values that are allowed but implausible, duplicate records, events outside the
# patients' registration or after the index date, and diagnosis codes that no code list
# matches. Problems found here do not stop the analysis; they tell a reader how far to trust
# it, and a data manager what to fix in the next extract.
#
# **Data.** By default the synthetic default cohort in `data/synthetic/` (not real patients).
#
# **Run it on your extract first**, before the other notebooks:
# `papermill notebooks/06_data_quality.ipynb out.ipynb -p data path/to/extract`.

# %% tags=["parameters"]
# Parameters: the ones this notebook uses. Any other parameter of analysis.params.Params
# can be given with papermill (-p NAME VALUE) or in a YAML file named by params_file.
data = "data/synthetic"  # a contract folder or a database URL
output_dir = ""  # where tables and figures go; empty: reports/interactive/NOTEBOOK
params_file = ""  # a YAML file of further parameters
index_date = "2015-12-31"
lookback_years = 10
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
disclosure = "auto"

# %%
from IPython.display import display

from analysis import notebook, quality

run = notebook.start(globals(), notebook="06_data_quality")
db = run.open_database()
run.header("Data quality")

# %% [markdown]
# ## How this was computed

# %%
run.methods()

# %% [markdown]
# ## Completeness
#
# For every column of every table: how many values are missing. Optional columns (the end
# of registration, for one) are expected to be partly empty; a required column is never
# empty in a database that passed validation.

# %%
comp = run.save_table(quality.completeness(db), "completeness")
run.show(comp)

# %% [markdown]
# ## Implausible values and events outside registration
#
# Values the contract allows but a clinician would question (ages over 105, severity 0),
# and events dated before registration, after it ended or after the index date. The
# definitions ignore events after the index date; the others are counted as recorded, so a
# large number here is worth a look before the estimates are used.

# %%
plaus = run.save_table(quality.plausibility(db, run.params), "plausibility")
run.show(plaus)

# %% [markdown]
# ## Duplicate records
#
# Records that repeat another of the same patient on every column. Duplicates do not change
# whether a patient has a condition, but they inflate the number of episodes and can make
# pain look recurrent.

# %%
dups = run.save_table(quality.duplicates(db), "duplicates")
run.show(dups)

# %% [markdown]
# ## Code-list coverage
#
# The share of records whose code is in one of the code lists, and the most frequent
# diagnosis codes that no list matches: check that none of them should be a risk condition.
# Under disclosure control a code recorded for too few patients is left out.

# %%
cov = run.save_table(quality.code_coverage(db, run.params), "code_coverage")
display(run.show(cov))
unmatched = run.save_table(quality.unmatched_codes(db), "unmatched_codes")
db.close()
run.show(unmatched)

# %% [markdown]
# ## What disclosure control did
#
# `run.finish()` writes the run's figures (`results.csv`, read by `analysis combine` and
# the batch index) and what disclosure control did (`disclosure.json`): keep it last.

# %%
run.finish()
