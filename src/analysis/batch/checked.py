"""What papermill may receive: the one check between a file and an executed notebook.

Papermill writes every parameter it is given into the notebook's injected cell as Python
source (``name = value``): a name is pasted as it is, so a name from a file is code. Every
path that executes a notebook (``batch``, ``rerun``, the test suite) hands papermill only
what :func:`papermill_parameters` returned, and runs only a notebook that
:func:`project_notebook` found among the project's own. :func:`read_manifest` is the one
reader of a ``manifest.json`` that somebody else may have written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from pathlib import Path

from analysis import paths
from analysis.credentials import refuse_passwords
from analysis.errors import AnalysisError
from analysis.inputs import full_match, shown
from analysis.notebook import RUN_PARAMETERS
from analysis.params import Params

NOTEBOOK_NAME = re.compile(r"\d\d_[a-z][a-z0-9_]{1,60}")
"""A project notebook's name (its file stem), matched whole."""
PARAMETER_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
"""A parameter's name, matched whole: a plain identifier, nothing papermill could run."""
MAX_MANIFEST_BYTES = 5_000_000


def project_notebook(name, *, source: str) -> Path:
    """The path of the project's notebook ``name`` (``notebooks/NN_name.ipynb``, a regular
    file inside the notebook folder); anything else is refused."""
    if not full_match(NOTEBOOK_NAME, name):
        raise AnalysisError(
            f"{source}: notebook {shown(name)!r} is not a notebook name of this project "
            "(NN_name). Nothing was run."
        )
    path = paths.NOTEBOOKS / f"{name}.ipynb"
    folder = paths.NOTEBOOKS.resolve()
    if path.is_symlink() or not path.is_file() or path.resolve().parent != folder:
        available = sorted(p.stem for p in paths.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
        raise AnalysisError(
            f"{source}: notebook {name!r} is not one of the project's notebooks "
            f"({', '.join(available)}). Nothing was run."
        )
    return path


def notebook_sha256(path: Path) -> str:
    """sha256 of a notebook file (recorded in each run's manifest)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _plain(value, depth: int = 0) -> bool:
    """A value papermill can write as a literal: None, a bool, an int, a finite float, a
    text without NUL, or a list of those."""
    if value is None or isinstance(value, bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, list | tuple) and depth == 0:
        return all(_plain(v, 1) for v in value)
    return False


def papermill_parameters(params: dict, *, source: str) -> dict:
    """``params`` when every name is a declared parameter (of the parameter set, or one of
    the notebooks' run parameters: data, output_dir, params_file, grid, published) and
    every value has its declared type; refused otherwise, naming the parameter. The only
    mapping handed to ``papermill.execute_notebook``."""

    if not isinstance(params, dict):
        raise AnalysisError(f"{source}: the parameters must be a mapping of name: value.")
    problems = []
    declared = set(Params.names()) | set(RUN_PARAMETERS)
    # a date from YAML (index_date: 2015-12-31) is written as its ISO text, as papermill does
    params = {
        k: v.isoformat() if isinstance(v, dt.date) and not isinstance(v, dt.datetime) else v
        for k, v in params.items()
    }
    for name, value in params.items():
        if not full_match(PARAMETER_NAME, name) or name not in declared:
            problems.append(f"{source}: {shown(name)!r} is not a declared parameter")
        elif not _plain(value):
            problems.append(
                f"{source}: parameter {name}: {type(value).__name__} is not a value a parameter "
                "takes (a number, a text, true/false or a list of those)"
            )
        elif name in RUN_PARAMETERS and value is not None and not isinstance(value, str):
            problems.append(f"{source}: parameter {name} must be a path (a text)")
    if problems:
        raise AnalysisError("\n".join(problems) + "\nNothing was run.")

    refuse_passwords(params, source)
    Params.from_mapping({k: v for k, v in params.items() if k in Params.names()}, source=source)
    return dict(params)


def read_manifest(path: str | Path) -> dict:
    """A run's ``manifest.json``, parsed and checked before anything runs: a JSON object of
    at most ``MAX_MANIFEST_BYTES`` whose notebook is one of the project's (with the
    fingerprint the manifest records, where it records one) and whose parameters pass
    :func:`papermill_parameters`."""
    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"Manifest {path} does not exist.")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise AnalysisError(f"{path} is larger than a run manifest ({MAX_MANIFEST_BYTES:,} bytes).")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
        notebook = m["notebook"]
        resolved = m["resolved_parameters"]
        given = m["parameters"]
        data = given["data"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise AnalysisError(f"{path} is not a run manifest ({exc}).") from None
    source = f"Manifest {path}"
    nb_path = project_notebook(notebook, source=source)
    recorded = m.get("notebook_sha256")
    if recorded is not None and recorded != notebook_sha256(nb_path):
        raise AnalysisError(
            f"{source}: notebooks/{notebook}.ipynb is not the notebook the run used (its "
            "sha256 differs from the manifest's notebook_sha256); check out the run's commit "
            f"({(m.get('code_fingerprint') or {}).get('git_commit')}) to repeat it."
        )
    if not isinstance(resolved, dict) or not isinstance(given, dict):
        raise AnalysisError(f"{source}: parameters must be mappings of name: value.")
    if not isinstance(data, str):
        raise AnalysisError(f"{source}: parameters.data must be a path or a database URL.")
    params = {**resolved, "data": data}
    for k in ("grid", "published"):
        if k in given:
            params[k] = given[k]
    m["checked_parameters"] = papermill_parameters(params, source=source)
    m["notebook_path"] = nb_path
    return m
