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
# # 04 Sensitivity
#
# How much the eligibility estimate depends on choices the paper had to make: the age from
# which a patient counts as elderly, how many episodes make pain recurrent, the least
# severity, which conditions count as risk conditions, and the share of the target subgroup
# expected to benefit. Every combination of the grid is computed from one pass over the data.
# A reader should look for the assumptions that move the estimate most, and ask whether
# the paper's choices are defensible for their own setting; a wide spread is not an error,
# it is what the paper's single figure hides.
#
# **Data.** By default the synthetic default cohort in `data/synthetic/` (not real
# patients); the grid is the package's (`src/analysis/sensitivity_grid.yaml`) unless `grid`
# names another file.
#
# **Run it** with papermill, e.g.
# `papermill notebooks/04_sensitivity.ipynb out.ipynb -p grid my_grid.yaml`.

# %% tags=["parameters"]
# Parameters: the ones this notebook uses. The grid varies the definitions around these;
# any other parameter of analysis.params.Params can be given with papermill (-p NAME VALUE)
# or in a YAML file named by params_file.
data = "data/synthetic"  # a contract folder or a database URL
output_dir = ""  # where tables and figures go; empty: reports/interactive/NOTEBOOK
params_file = ""  # a YAML file of further parameters
grid = ""  # a grid YAML file; empty: the package grid
index_date = "2015-12-31"
gp_list_size = 1500
confidence_level = 0.95
ci_method = "wilson"
disclosure = "auto"

# %%
from IPython.display import display

from analysis import notebook, plots, sensitivity

run = notebook.start(globals(), notebook="04_sensitivity", study=False)
g = run.grid = sensitivity.load_grid(notebook.resolve(grid))
db = run.open_database()
cube = run.cube = sensitivity.grid_cube(db, run.params, g)
db.close()
label = run.cube_label(cube)
print(f"Sensitivity grid {g.source}: {g.size} cells; data: {label}")

# %% [markdown]
# ## How this was computed
#
# The definitions the grid starts from, how the estimate and its interval are computed in
# each cell, and which parameters the grid varies.

# %%
run.methods()

# %% [markdown]
# ## The grid
#
# One row per combination: the varied parameters, the target subgroup and the expected
# candidates per GP list with the interval of the expectation. Under disclosure control a
# cell whose target subgroup is too small reads "withheld", and so does a cell within the
# threshold of a released cell that contains it or that it contains (their difference would
# be a small group).

# %%
table = run.save_table(
    sensitivity.sensitivity_table(cube, g, run.params, rule=run.rule), "sensitivity_grid"
)
run.show(table)

# %% [markdown]
# ## Which assumption moves the estimate most
#
# The tornado chart changes one parameter at a time from the base definitions and shows the
# lowest and highest expected candidates per GP list over its values; the longest bars are
# the assumptions that matter most. A parameter whose cells are withheld shows a note
# instead of a bar.

# %%
tor = run.save_table(sensitivity.tornado_table(table, g, run.params), "tornado")
display(run.show(tor, index="parameter"))
run.show_figure(plots.tornado(tor, label), "tornado");

# %% [markdown]
# ## Elderly age threshold x benefit fraction
#
# The expected candidates per GP list for each pair of the elderly threshold and the
# benefit share, the other parameters at their base values. Read along a row to see what the
# benefit assumption alone does.

# %%
heat = sensitivity.heatmap_table(table, g, run.params, "elderly_age", "benefit_fraction")
heat = run.save_table(heat.reset_index(), "heatmap_elderly_age_benefit").set_index("elderly_age")
run.show_figure(
    plots.heatmap(
        heat,
        label,
        "benefit fraction",
        "elderly age threshold (years)",
        "Expected candidates per GP list",
    ),
    "heatmap_elderly_age_benefit",
);

# %% [markdown]
# ## What disclosure control did
#
# `run.finish()` writes the run's figures (`results.csv`, read by `analysis combine` and
# the batch index) and what disclosure control did (`disclosure.json`): keep it last.

# %%
run.finish()
