"""The default batch against a plain sequential loop of `papermill` and
`jupyter nbconvert --to html` commands over the same runs, in the same script run.

Measures: the batch cold (--force), an unchanged re-run, and the plain loop; then where
the time goes (kernel start, imports, computation, HTML conversion) from the manifests
and papermill's per-cell durations. Usage: python benchmarks/bench_batch.py [--jobs N]
"""

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from measure import PY, ROOT, machine, table

ap = argparse.ArgumentParser()
ap.add_argument("--jobs", type=int, default=None)
ap.add_argument("--batch", default=str(ROOT / "batches" / "paper.yaml"))
args = ap.parse_args()

import sys  # noqa: E402

sys.path.insert(0, str(ROOT / "src"))
from analysis.batch import load_batch, run_parameters  # noqa: E402

reports = Path(tempfile.mkdtemp(prefix="bench-batch-"))
batch = load_batch(args.batch, reports=reports)
jobs = ["--jobs", str(args.jobs)] if args.jobs else []
cmd = [PY, "-m", "analysis", "batch", args.batch, "--reports", str(reports), *jobs]

t = time.perf_counter()
subprocess.run(cmd + ["--force"], check=True, capture_output=True, cwd=ROOT)
cold = time.perf_counter() - t
t = time.perf_counter()
subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
rerun = time.perf_counter() - t

loop_dir = Path(tempfile.mkdtemp(prefix="bench-loop-"))
t = time.perf_counter()
for run in batch.runs:
    out = loop_dir / run.name
    out.mkdir(parents=True)
    params = run_parameters(run, out)
    pm = [
        PY,
        "-m",
        "papermill",
        str(run.notebook_path),
        str(out / f"{run.notebook}.ipynb"),
        "-k",
        "analysis",
        "--cwd",
        str(ROOT / "notebooks"),
    ]
    for k, v in params.items():
        pm += ["-y", json.dumps({k: v})]
    subprocess.run(pm, check=True, capture_output=True, cwd=ROOT)
    subprocess.run(
        [
            PY,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "html",
            "--no-input",
            str(out / f"{run.notebook}.ipynb"),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
loop = time.perf_counter() - t

rows = [
    {
        "what": f"plain loop: papermill + nbconvert commands ({len(batch.runs)} runs)",
        "wall s": loop,
        "speed-up": 1.0,
    },
    {"what": "analysis batch --force (cold)", "wall s": cold, "speed-up": loop / cold},
    {"what": "analysis batch, unchanged re-run", "wall s": rerun, "speed-up": loop / rerun},
]
print(f"Machine: {machine()}")
print(table(rows, ["what", "wall s", "speed-up"]))

# where the time goes, summed over the runs of the cold batch
first, compute, html, total = 0.0, 0.0, 0.0, 0.0
for d in (reports / batch.name).iterdir():
    m = d / "manifest.json"
    if not m.exists():
        continue
    man = json.loads(m.read_text())
    html += man["timings"].get("html_s", 0)
    total += man["timings"]["total_s"]
    nb = json.loads((d / f"{man['notebook']}.ipynb").read_text())
    durations = [
        c["metadata"].get("papermill", {}).get("duration") or 0
        for c in nb["cells"]
        if c["cell_type"] == "code"
    ]
    # code cells: [parameters, injected parameters, imports + data + cube, rest...]
    first += sum(durations[:3])
    compute += sum(durations[3:])
kernel = total - first - compute - html
print(
    table(
        [
            {"part": "kernel start and papermill overhead", "seconds (sum over runs)": kernel},
            {
                "part": "imports, parameter checks, data validation and cube (first cells)",
                "seconds (sum over runs)": first,
            },
            {
                "part": "statistics, figures and tables (other cells)",
                "seconds (sum over runs)": compute,
            },
            {"part": "HTML conversion", "seconds (sum over runs)": html},
        ],
        ["part", "seconds (sum over runs)"],
    )
)
shutil.rmtree(reports, ignore_errors=True)
shutil.rmtree(loop_dir, ignore_errors=True)
