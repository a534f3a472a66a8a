"""Where the time of `python -m analysis figures --json` goes: pyinstrument call trees of
a first run (which validates the files) and of a run that finds them validated, each in
a fresh process, on the synthetic cohort of n patients.

Usage: python benchmarks/profile_figures.py [--n 10000000] [--command figures|sensitivity]

Time spent inside DuckDB shows as ``execute`` (one SQL query) under the Python function
that sent it. On a first run the validation runs in a second thread while the cube is
built, so the main thread's tree shows it only as a slower cube query; the third tree is
the validation alone (``open_database`` with the cache off), where the lookup's worker
threads show as ``result_iterator`` under ``event_checks``.
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
runs = [
    (
        "first run (validates)",
        ["-m", "analysis", args.command, "--data", str(folder), "--json"],
        env,
    ),
    ("validated before", ["-m", "analysis", args.command, "--data", str(folder), "--json"], env),
    (
        "the validation alone",
        ["-c", f"from analysis.data import open_database; open_database({str(folder)!r})"],
        {**os.environ, "ANALYSIS_CACHE": "off"},
    ),
]
for label, target, run_env in runs:
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as out:
        subprocess.run(
            [
                PY,
                "-m",
                "pyinstrument",
                "-r",
                "text",
                "--no-color",
                "-o",
                out.name,
                "-p",
                "processor_options.filter_threshold=0.02",
                *target,
            ],
            cwd=ROOT,
            env=run_env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        report = Path(out.name).read_text()
    print(
        f"\n## {args.command if label != runs[2][0] else 'validation'}, {args.n:,} patients, "
        f"{label}\n"
    )
    print(report.strip())
