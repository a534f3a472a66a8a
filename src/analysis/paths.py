"""Where things are. The only module that spells a project path."""

from __future__ import annotations

import os
from pathlib import Path


def _find_root() -> Path:
    env = os.environ.get("ANALYSIS_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "data").is_dir():
            return parent
    return Path.cwd()


ROOT = _find_root()
DATA = ROOT / "data"
CODELISTS = DATA / "codelists"
REFERENCE = DATA / "reference"
SYNTHETIC = DATA / "synthetic"
CALIBRATION = DATA / "synthetic_calibration.yaml"
NOTEBOOKS = ROOT / "notebooks"
REPORTS = ROOT / "reports"
BATCHES = ROOT / "batches"
DEFAULT_GRID = Path(__file__).with_name("sensitivity_grid.yaml")
LOCK_FILE = ROOT / "requirements.lock"
