"""A batch's store of profile-cube query results, shared by its runs (issue 29).

The cube query (:func:`analysis.cohort.profile_cube`) is the one scan of the patient-level
tables a run makes; runs of one batch on the same data often ask the same query (the
eligibility notebook under scenarios that change only the benefit share or the age limit).
``analysis batch`` makes a private folder (mode 0700, removed when the batch ends), names it
in :data:`ENV` for its kernels, and every run finds there what an earlier run computed.

Content-addressed: the key is the sha256 of the data files' content, the query's text (every
definition parameter that shapes the cube is written into it), the code maps it joins (the
code lists' content) and the DuckDB version; a changed parameter, code list or file is
another key, never a stale result. Only contract folders and DuckDB files are stored (a
server database may change under the batch). What is read back is data: ``.npz`` arrays
loaded without pickle and checked (one-dimensional, of one length, numbers, booleans or
text); a file that fails a check is ignored and computed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

ENV = "ANALYSIS_CUBE_STORE"
_KINDS = "biufU"  # numpy kinds kept: booleans, integers, unsigned, floats, text


def folder() -> Path | None:
    """The store named by :data:`ENV`: a real folder (not a link) of this user, else None."""
    name = os.environ.get(ENV)
    if not name:
        return None
    path = Path(name)
    try:
        st = path.lstat()
    except OSError:
        return None
    import stat

    uid = getattr(os, "getuid", None)  # POSIX only: elsewhere no store is used
    if uid is None or not stat.S_ISDIR(st.st_mode) or st.st_uid != uid():
        return None
    return path


def key(parts: dict) -> str:
    """The sha256 of ``parts`` (JSON, keys sorted)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def load(store: Path, digest: str) -> dict[str, np.ndarray] | None:
    """The columns stored under ``digest`` (text as Python strings, as DuckDB returns them),
    or None when there are none or they fail a check."""
    path = store / f"{digest}.npz"
    if path.is_symlink() or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            cols = {k: npz[k] for k in npz.files}
    except Exception:  # whatever a strange file makes numpy or zipfile raise: not ours
        return None
    lengths = {len(v) for v in cols.values() if v.ndim == 1}
    if (
        not cols
        or len(lengths) != 1
        or any(v.ndim != 1 or v.dtype.kind not in _KINDS for v in cols.values())
    ):
        return None
    return {k: v.astype(object) if v.dtype.kind == "U" else v for k, v in cols.items()}


def save(store: Path, digest: str, columns: dict) -> bool:
    """Store ``columns`` under ``digest`` (atomically); False when a column cannot be
    stored as data (text with missing values, objects other than strings)."""
    arrays = {}
    for name, col in columns.items():
        arr = np.asarray(col)
        if arr.dtype.kind == "O":
            if not all(isinstance(x, str) for x in arr):
                return False
            arr = arr.astype(str)
        if arr.ndim != 1 or arr.dtype.kind not in _KINDS:
            return False
        arrays[name] = arr
    fd, tmp = tempfile.mkstemp(dir=store, prefix=".", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, store / f"{digest}.npz")
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        return False
    return True
