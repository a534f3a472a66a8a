"""`practices --json` against `figures --json` on the same files, side by side: a synthetic
network (10 million patients in 2,000 practices by default). Each command runs ``--repeat``
times, interleaved, on files validated before (the validation is shared), and the table shows
the median wall time and peak memory, and the ratio practices / figures (target: 1.5x).

Usage: python benchmarks/bench_practices.py [--patients N] [--practices K] [--repeat 3]
"""

import argparse
import json
import os
import statistics
import tempfile

from measure import PY, ROOT, machine, measure, synthetic, table

ap = argparse.ArgumentParser()
ap.add_argument("--patients", type=int, default=10_000_000)
ap.add_argument("--practices", type=int, default=2000)
ap.add_argument("--repeat", type=int, default=3)
args = ap.parse_args()

folder = synthetic(args.patients, practices=args.practices)
env = {**os.environ, "ANALYSIS_CACHE": tempfile.mkdtemp(prefix="bench-cache-")}
cmds = {
    "figures": [PY, "-m", "analysis", "figures", "--data", str(folder), "--json"],
    "practices": [PY, "-m", "analysis", "practices", "--data", str(folder), "--json"],
}
measure(cmds["figures"], cwd=ROOT, env=env)  # validates once; both commands then find it done
runs = {k: [] for k in cmds}
for _ in range(args.repeat):
    for k, cmd in cmds.items():
        runs[k].append(measure(cmd, cwd=ROOT, env=env))
med = {
    k: {
        "wall_s": statistics.median(r["wall_s"] for r in v),
        "peak_mb": statistics.median(r["peak_mb"] for r in v),
    }
    for k, v in runs.items()
}
out = json.loads(runs["practices"][-1]["stdout"])
figs = {f["id"]: f["value"] for f in json.loads(runs["figures"][-1]["stdout"])}
assert sum(p["population_n"] for p in out["practices"]) == figs["population.n"]
assert sum(p["target_n"] for p in out["practices"]) == figs["target.n"]
rows = [
    {
        "what": f"analysis {k} --json",
        "wall s": m["wall_s"],
        "peak MB": m["peak_mb"],
        "time / figures": m["wall_s"] / med["figures"]["wall_s"],
        "memory / figures": m["peak_mb"] / med["figures"]["peak_mb"],
    }
    for k, m in med.items()
]
print(
    f"Machine: {machine()}; {args.patients:,} patients in {args.practices:,} practices; "
    f"median of {args.repeat} run(s)"
)
print(table(rows, ["what", "wall s", "peak MB", "time / figures", "memory / figures"]))
p = out["pooled"]
print(
    f"pooled: {p['estimate']:.2f}% ({p['ci_low']:.2f}-{p['ci_high']:.2f}), tau2 {p['tau2']:.4f}, "
    f"I2 {p['i2']:.1f}%, prediction {p['prediction_low']:.2f}-{p['prediction_high']:.2f}%"
)
