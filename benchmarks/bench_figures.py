"""`figures` and `sensitivity` at scale (first run, which validates the files, and a
second run, which finds them validated) against the floor (one hand-written DuckDB query)
and plain pandas, as whole processes on the same files, in one run.

Usage: python benchmarks/bench_figures.py [--sizes 100000 1000000 10000000] [--pandas-max N]
"""

import argparse
import json
import os
import tempfile

from measure import PY, ROOT, growth_exponent, machine, measure, synthetic, table

ap = argparse.ArgumentParser()
ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
ap.add_argument("--pandas-max", type=int, default=10_000_000, help="skip plain pandas above this n")
args = ap.parse_args()

rows = []
project_times = []
for n in args.sizes:
    folder = synthetic(n)
    floor = measure([PY, "benchmarks/floor_duckdb.py", str(folder)], cwd=ROOT)
    cache = {**os.environ, "ANALYSIS_CACHE": tempfile.mkdtemp(prefix="bench-cache-")}
    cold = measure([PY, "-m", "analysis", "figures", "--data", str(folder), "--json"], cwd=ROOT, env=cache)
    fig = measure([PY, "-m", "analysis", "figures", "--data", str(folder), "--json"], cwd=ROOT, env=cache)
    counts = json.loads(floor["stdout"])
    figs = {f["id"]: f["value"] for f in json.loads(fig["stdout"])}
    assert (figs["population.n"], figs["pain.n"], figs["pain_risk.n"], figs["target.n"]) == \
        (counts["population"], counts["pain"], counts["pain_risk"], counts["target"]), (figs, counts)
    project_times.append(fig["wall_s"])
    for what, m in (("floor: one DuckDB query (4 counts)", floor),
                    ("analysis figures --json, first run (validates)", cold),
                    ("analysis figures --json (validated before)", fig)):
        rows.append({"n": n, "what": what, "wall s": m["wall_s"], "peak MB": m["peak_mb"],
                     "time / floor": m["wall_s"] / floor["wall_s"], "memory / floor": m["peak_mb"] / floor["peak_mb"]})
    if n == max(args.sizes):
        sens = measure([PY, "-m", "analysis", "sensitivity", "--data", str(folder), "--json"], cwd=ROOT, env=cache)
        rows.append({"n": n, "what": "analysis sensitivity --json (180 cells)", "wall s": sens["wall_s"],
                     "peak MB": sens["peak_mb"], "time / floor": sens["wall_s"] / floor["wall_s"],
                     "memory / floor": sens["peak_mb"] / floor["peak_mb"]})
    if n <= args.pandas_max:
        pdm = measure([PY, "benchmarks/plain_pandas.py", str(folder)], cwd=ROOT)
        rows.append({"n": n, "what": "plain pandas (same counts)", "wall s": pdm["wall_s"], "peak MB": pdm["peak_mb"],
                     "time / floor": pdm["wall_s"] / floor["wall_s"], "memory / floor": pdm["peak_mb"] / floor["peak_mb"]})

print(f"Machine: {machine()}")
print(table(rows, ["n", "what", "wall s", "peak MB", "time / floor", "memory / floor"]))
if len(args.sizes) > 1:
    print(f"growth exponent of `figures` wall time in n: {growth_exponent(args.sizes, project_times):.2f} (1 = linear)")
