"""Batch report generation: notebooks x scenarios (x data sources) with papermill.

A batch file (YAML) names the runs; ``python -m analysis batch`` executes them in worker
processes and writes, per run, ``reports/<batch>/<run>/``: the executed notebook, its HTML,
figures, tables, a log and ``manifest.json``; and an ``index.html`` for the batch.

Safety: every run's parameters are checked before the first run starts; each run is
written to a hidden temporary folder and renamed into place only when complete; a run
whose notebook, parameters, module code and input data are unchanged is skipped (unless
``force``), so an interrupted batch resumes where it stopped. The batch only runs
notebooks: it never computes a statistic itself.
"""

import sys

# jsonschema imports rfc3987_syntax where it is installed (JupyterLab's jupyter-events asks
# for it), which builds a Lark grammar for about 1 s in every process that imports nbformat;
# the notebook schema uses none of the IRI formats it checks: the batch's processes skip it
sys.modules.setdefault("rfc3987_syntax", None)

from analysis.batch.execute import execute_run, main_batch, run_batch, summary_table, write_index
from analysis.batch.manifest import code_fingerprint, data_fingerprint, package_versions
from analysis.batch.plan import MANIFEST, Batch, Run, load_batch, plan, run_parameters
from analysis.batch.rerun import rerun_manifest

__all__ = [
    "MANIFEST",
    "Batch",
    "Run",
    "code_fingerprint",
    "data_fingerprint",
    "execute_run",
    "load_batch",
    "main_batch",
    "package_versions",
    "plan",
    "rerun_manifest",
    "run_parameters",
    "run_batch",
    "summary_table",
    "write_index",
]
