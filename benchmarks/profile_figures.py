"""Where the time of `python -m analysis figures --json` goes: pyinstrument call trees of
a first run (which validates the files) and of a run that finds them validated, each in
a fresh process, on the synthetic cohort of n patients.

Usage: python benchmarks/profile_figures.py [--n 10000000] [--command figures|sensitivity]

Time spent inside DuckDB shows as ``execute`` (one SQL query) under the Python function
that sent it; pyarrow and numpy work in threads shows under ``event_checks``.
"""

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

from measure import PY, ROOT, synthetic

ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=10_000_000)
ap.add_argument("--command", default="figures", choices=["figures", "sensitivity"])
args = ap.parse_args()

folder = synthetic(args.n)
env = {**os.environ, "ANALYSIS_CACHE": tempfile.mkdtemp(prefix="profile-cache-")}
for label in ("first run (validates)", "validated before"):
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as out:
        subprocess.run([PY, "-m", "pyinstrument", "-r", "text", "--no-color", "-o", out.name,
                        "-p", "processor_options.filter_threshold=0.02",
                        "-m", "analysis", args.command, "--data", str(folder), "--json"],
                       cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        report = Path(out.name).read_text()
    print(f"\n## {args.command}, {args.n:,} patients, {label}\n")
    print(report.strip())
