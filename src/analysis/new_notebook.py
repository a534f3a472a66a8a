"""``python -m analysis new-notebook NAME``: a new analysis as a notebook pair that batches
pick up (``notebooks/NN_name.py`` and ``.ipynb``), with the parameters cell, the run helper,
the methods paragraph, a table saved through the disclosure step and the disclosure summary.
"""

from __future__ import annotations

import re
from pathlib import Path

from analysis import paths
from analysis.errors import AnalysisError
from analysis.methods import HEADINGS
from analysis.outputs import atomic_write_text

NAME = re.compile(r"(?:(\d\d)_)?([a-z][a-z0-9_]{1,40})")  # matched whole (fullmatch)

TEMPLATE = """# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: {jupytext_version}
#   kernelspec:
#     display_name: Python (analysis)
#     language: python
#     name: analysis
# ---

# %% [markdown]
# # {number} {title}
#
# What this analysis shows, in two or three sentences a reader of the report can follow:
# the question, the population it concerns and the measure it reports. Say what a reader
# should and should not conclude from it.
#
# **Data.** By default the synthetic default cohort in `data/synthetic/` (not real
# patients); the heading under the set-up cell names the data and the disclosure rule.
#
# **Run it** on other data with papermill:
# `papermill notebooks/{stem}.ipynb out.ipynb -p data path/to/extract`, or in a batch (every
# `notebooks/NN_*.ipynb` is part of `notebooks: all`).

# %% tags=["parameters"]
# Parameters: the ones this notebook uses. Any other parameter of analysis.params.Params
# can be given with papermill (-p NAME VALUE) or in a YAML file named by params_file.
data = "data/synthetic"  # a contract folder or a database URL
output_dir = ""  # where tables and figures go; empty: reports/interactive/NOTEBOOK
params_file = ""  # a YAML file of further parameters
index_date = "2015-12-31"
elderly_age = 75
disclosure = "auto"

# %%
from analysis import notebook, statistics

run = notebook.start(globals(), notebook="{stem}")
study, cube = run.study, run.study.cube
run.header("{title}")

# %% [markdown]
# ## How this was computed
#
# The population and definitions this analysis uses, generated from the parameters (name
# other sections in `run.methods(...)`: {sections}).

# %%
run.methods("population", "definitions")

# %% [markdown]
# ## The result
#
# What the table shows and how to read it (its denominator, what the interval means).
# Every table goes through `run.save_table(df, name)`, the disclosure step: a table of
# your own is declared once with `analysis.outputs.declare_table` (README, "Your own
# tables"); show and plot what `save_table` returns.

# %%
sexes = run.save_table(statistics.sex_table(cube), "sex")
run.show(sexes, index="sex")

# %% [markdown]
# ## What disclosure control did
#
# `run.finish()` writes the run's figures (`results.csv`, read by `analysis combine` and
# the batch index) and what disclosure control did (`disclosure.json`): keep it last.

# %%
run.finish()
"""


def create_notebook(name: str, folder: Path | None = None) -> list[Path]:
    """Write ``NN_name.py`` and ``NN_name.ipynb`` (NN: the next free number unless given);
    refuses a name that exists."""
    import jupytext

    folder = Path(folder or paths.NOTEBOOKS)
    m = NAME.fullmatch(name)
    if not m:
        raise AnalysisError(
            f"Notebook name {name[:40]!r}: use lower-case letters, digits and _ (for example "
            "'visits_by_age' or '08_visits_by_age')."
        )
    number, base = m.group(1), m.group(2)
    taken = sorted(int(p.name[:2]) for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if number is None:
        number = f"{(taken[-1] + 1) if taken else 1:02d}"
    stem = f"{number}_{base}"
    clash = [p for p in folder.glob(f"{number}_*.*") if p.suffix in (".py", ".ipynb")]
    if clash:
        raise AnalysisError(f"{clash[0]} exists already: choose another name or number.")
    text = TEMPLATE.format(
        jupytext_version=jupytext.__version__,
        number=number,
        title=base.replace("_", " ").capitalize(),
        stem=stem,
        sections=", ".join(HEADINGS),
    )

    py = atomic_write_text(folder / f"{stem}.py", text)
    nb = jupytext.reads(text, fmt="py:percent")
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{number}-{i:02d}"
    ipynb = folder / f"{stem}.ipynb"
    atomic_write_text(ipynb, jupytext.writes(nb, fmt="ipynb"))
    return [py, ipynb]
