"""Publishing a folder the tool wrote, without ever deleting a file it did not write.

A database folder written by ``synth`` or ``import`` is built in a temporary folder
beside its destination and moved into place whole. The tool records what it wrote in
``.written-by-analysis`` (file names and sha256). An existing destination is replaced
only when every file in it is one the tool wrote and nobody changed since; otherwise
the command is refused with the names of the other files, and nothing is deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from analysis.errors import AnalysisError
from analysis.files import atomic_write_text

RECORD = ".written-by-analysis"


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record_written(folder: Path, by: str) -> None:
    """Record every file of ``folder`` as written by the tool (``by``: the command)."""
    files = {
        p.name: _sha256(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != RECORD
    }
    atomic_write_text(
        folder / RECORD, json.dumps({"written_by": by, "files": files}, indent=1) + "\n"
    )


def not_ours(folder: Path) -> list[str]:
    """Names of the entries of ``folder`` the tool did not write (or that changed since)."""
    rec = folder / RECORD
    try:
        listed = json.loads(rec.read_text())["files"] if rec.exists() else None
    except (json.JSONDecodeError, KeyError, TypeError):
        listed = {}
    if listed is None:  # no record: nothing in it is known to be ours
        return [p.name for p in sorted(folder.iterdir())]
    other = []
    for p in sorted(folder.iterdir()):
        if p.name == RECORD:
            continue
        if not p.is_file() or p.name not in listed or _sha256(p) != listed[p.name]:
            other.append(p.name)
    return other


def publish_folder(tmp: Path, into: Path, by: str) -> None:
    """Move the finished folder ``tmp`` to ``into`` (see the module docstring)."""
    record_written(tmp, by)
    into = Path(into)
    if into.exists():
        if not into.is_dir():
            raise AnalysisError(f"{into} exists and is not a folder; choose another destination.")
        other = not_ours(into)
        if other:
            shown = ", ".join(other[:10]) + (
                f" and {len(other) - 10} more" if len(other) > 10 else ""
            )
            raise AnalysisError(
                f"{into} holds files this tool did not write ({shown}); nothing was "
                "deleted or replaced. Choose another destination folder (a folder written "
                "by an earlier version, without .written-by-analysis, you may delete yourself)."
            )
        old = into.with_name(f".{into.name}.old-{os.getpid()}")
        into.rename(old)
        tmp.rename(into)
        shutil.rmtree(old)
    else:
        into.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(into)
