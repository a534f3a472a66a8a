"""Repeat a run from its manifest alone and check that its tables come out byte-identical."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from analysis import paths
from analysis.batch.checked import read_manifest
from analysis.batch.kernels import WarmKernel
from analysis.batch.manifest import data_fingerprint, sha256_file
from analysis.errors import AnalysisError
from analysis.notebook import resolve


def rerun_manifest(manifest_path: str | Path) -> int:
    """Repeat a run from its manifest alone and check that its tables come out
    byte-identical. Returns 0 when they do, 1 when any differs."""
    import tempfile

    manifest_path = Path(manifest_path)
    m = read_manifest(manifest_path)  # checked before anything runs
    notebook, data = m["notebook"], m["parameters"]["data"]
    run_dir = manifest_path.parent
    now_fp = data_fingerprint(resolve(data))
    if now_fp != m.get("input_fingerprint"):
        raise AnalysisError(
            f"The input data at {data} are not the files the run used (their "
            "sha256 differ from the manifest's input_fingerprint)."
        )
    lock = sha256_file(paths.LOCK_FILE) if paths.LOCK_FILE.exists() else None
    if m.get("lock_sha256") and lock != m["lock_sha256"]:
        print(
            f"warning: requirements.lock differs from the run's ({str(m['lock_sha256'])[:12]}...)",
            file=sys.stderr,
        )
    # a folder of its own inside a private temporary one: the disclosure ledger the run
    # writes (analysis.outputs.ledger) stays in it, never shared with other reruns
    out = Path(tempfile.mkdtemp(prefix="rerun-")) / "run"
    out.mkdir()
    params = {**m["checked_parameters"], "output_dir": str(out)}
    import logging

    quiet = logging.Filter()
    quiet.filter = lambda rec: "Passed unknown parameter" not in rec.getMessage()
    pm_log = logging.getLogger("papermill")
    pm_log.addFilter(quiet)  # the notebook takes any parameter of the set: not a warning
    try:  # the batch's own mechanism: a kernel with the imports done, reset before the run
        with WarmKernel() as kernel:
            kernel.execute(m["notebook_path"], out / f"{notebook}.ipynb", params)
    finally:
        pm_log.removeFilter(quiet)
    differ = []
    tables = sorted((run_dir / "tables").glob("*.csv"))
    for t in tables:
        again = out / "tables" / t.name
        if not again.exists() or again.read_bytes() != t.read_bytes():
            differ.append(t.name)
    if differ:
        print(
            f"{len(differ)} of {len(tables)} table(s) differ: {', '.join(differ)} (new run in "
            f"{out})"
        )
        return 1
    print(f"Re-ran {notebook} from {manifest_path}: all {len(tables)} tables byte-identical.")
    shutil.rmtree(out, ignore_errors=True)
    return 0
