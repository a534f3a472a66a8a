"""`figures` and `sensitivity` at scale (first run, which validates the files, and a
second run, which finds them validated) against the floor (one hand-written DuckDB query)
and plain pandas, as whole processes on the same files, in one run.

Each command runs ``--repeat`` times, interleaved with the floor (floor, first run,
validated run, floor, ...), and the table shows the median wall time and the median peak
memory, so a slow moment of a shared machine does not land on one side only.

Usage: python benchmarks/bench_figures.py [--sizes 100000 1000000 10000000] [--repeat 3]
       [--pandas-max N]
"""

import argparse
import json
import os
import statistics
import tempfile

from measure import PY, ROOT, growth_exponent, machine, measure, synthetic, table

ap = argparse.ArgumentParser()
ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
ap.add_argument("--repeat", type=int, default=3, help="runs of each command (the median is shown)")
ap.add_argument("--pandas-max", type=int, default=10_000_000, help="skip plain pandas above this n")
args = ap.parse_args()


def median_of(runs: list[dict]) -> dict:
    return {
        "wall_s": statistics.median(r["wall_s"] for r in runs),
        "peak_mb": statistics.median(r["peak_mb"] for r in runs),
        "stdout": runs[-1]["stdout"],
    }


def figures_cmd(folder):
    return [PY, "-m", "analysis", "figures", "--data", str(folder), "--json"]


rows = []
project_times = []
for n in args.sizes:
    folder = synthetic(n)
    runs = {"floor": [], "cold": [], "warm": []}
    for _ in range(args.repeat):
        cache = {**os.environ, "ANALYSIS_CACHE": tempfile.mkdtemp(prefix="bench-cache-")}
        runs["floor"].append(measure([PY, "benchmarks/floor_duckdb.py", str(folder)], cwd=ROOT))
        runs["cold"].append(measure(figures_cmd(folder), cwd=ROOT, env=cache))
        runs["warm"].append(measure(figures_cmd(folder), cwd=ROOT, env=cache))
    floor, cold, fig = (median_of(runs[k]) for k in ("floor", "cold", "warm"))
    counts = json.loads(floor["stdout"])
    for m in runs["cold"] + runs["warm"]:
        figs = {f["id"]: f["value"] for f in json.loads(m["stdout"])}
        assert (figs["population.n"], figs["pain.n"], figs["pain_risk.n"], figs["target.n"]) == (
            counts["population"],
            counts["pain"],
            counts["pain_risk"],
            counts["target"],
        ), (figs, counts)
    project_times.append(cold["wall_s"])

    def row(what, m, n=n, floor=floor):
        return {
            "n": n,
            "what": what,
            "wall s": m["wall_s"],
            "peak MB": m["peak_mb"],
            "time / floor": m["wall_s"] / floor["wall_s"],
            "memory / floor": m["peak_mb"] / floor["peak_mb"],
        }

    rows += [
        row("floor: one DuckDB query (4 counts)", floor),
        row("analysis figures --json, first run (validates)", cold),
        row("analysis figures --json (validated before)", fig),
    ]
    if n == max(args.sizes):
        sens = median_of(
            [
                measure(
                    [PY, "-m", "analysis", "sensitivity", "--data", str(folder), "--json"], cwd=ROOT
                )
                for _ in range(args.repeat)
            ]
        )
        rows.append(row("analysis sensitivity --json (180 cells)", sens))
    if n <= args.pandas_max:
        rows.append(
            row(
                "plain pandas (same counts)",
                measure([PY, "benchmarks/plain_pandas.py", str(folder)], cwd=ROOT),
            )
        )

print(f"Machine: {machine()}; median of {args.repeat} run(s) per line (plain pandas: 1)")
print(table(rows, ["n", "what", "wall s", "peak MB", "time / floor", "memory / floor"]))
if len(args.sizes) > 1:
    print(
        f"growth exponent of `figures` first-run wall time in n: "
        f"{growth_exponent(args.sizes, project_times):.2f} (1 = linear)"
    )
