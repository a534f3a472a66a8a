"""What a run records about how it was made: code and data fingerprints, package versions,
the parameters papermill injects; written atomically."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from analysis import paths
from analysis.data import remembered_digests
from analysis.engines import is_url, redact
from analysis.files import atomic_write_text


def code_fingerprint() -> dict:
    """sha256 over the analysis package's source files, and the git commit and state."""
    h = hashlib.sha256()
    pkg = Path(__file__).resolve().parents[1]  # the analysis package
    for p in sorted(pkg.rglob("*")):
        if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts:
            h.update(p.relative_to(pkg).as_posix().encode())
            h.update(p.read_bytes())
    for p in sorted(paths.CODELISTS.glob("*.csv")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    commit, dirty = None, None
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=paths.ROOT,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            or None
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=paths.ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return {"module_sha256": h.hexdigest(), "git_commit": commit, "git_dirty": dirty}


def data_fingerprint(data) -> dict:
    if is_url(data):
        return {"database": redact(str(data))}
    data = Path(data)
    if data.is_dir():
        files = sorted(
            p for p in data.iterdir() if p.is_file() and p.suffix in (".parquet", ".csv", ".json")
        )
    else:
        files = [data] if data.exists() else []
    return {p.name: digest for p, digest in remembered_digests(files).items()}


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in (
        "analysis",
        "duckdb",
        "ipykernel",
        "matplotlib",
        "nbconvert",
        "numpy",
        "pandas",
        "papermill",
        "pyarrow",
        "scipy",
        "statsmodels",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    out["python"] = sys.version.split()[0]
    return out


# ----------------------------------------------------------------------------- one run
def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


# ----------------------------------------------------------------------------- fingerprints
def sha256_file(p: Path) -> str:
    """sha256 of one file, through the digest memo (:func:`analysis.data.remembered_digests`)."""
    return remembered_digests([p])[Path(p)]
