"""The disclosure audit's cost: the default batch (13 runs) without a rule (the default on
synthetic data: no audit) and under a rule (every table audited with everything released
before it, in the run and in the reports folder), side by side, each into a fresh reports
folder, ``--repeat`` times interleaved; then what the audit withheld beyond the rule.

Usage: python benchmarks/bench_audit.py [--rule ohdsi] [--jobs 2] [--repeat 1]

`figures` runs no audit (it releases the figures alone, under the rule's own steps), so
its time at 10 million patients is that of benchmarks/bench_figures.py.
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from measure import PY, ROOT, machine, measure, table

ap = argparse.ArgumentParser()
ap.add_argument("--rule", default="ohdsi")
ap.add_argument("--jobs", type=int, default=2)
ap.add_argument("--repeat", type=int, default=1)
args = ap.parse_args()

modes = {"no rule (synthetic default)": "auto", f"under {args.rule} (audited)": args.rule}
runs = {k: [] for k in modes}
last = {}
for _ in range(args.repeat):
    for label, rule in modes.items():
        out = Path(tempfile.mkdtemp(prefix="bench-audit-"))
        cmd = [PY, "-m", "analysis", "batch", "batches/paper.yaml", "--reports", str(out),
               "--disclosure", rule, "--jobs", str(args.jobs), "--force"]  # fmt: skip
        runs[label].append(measure(cmd, cwd=ROOT))
        last[label] = out
base = statistics.median(r["wall_s"] for r in runs[next(iter(modes))])
rows = []
for label, rs in runs.items():
    wall = statistics.median(r["wall_s"] for r in rs)
    rows.append({"batch": label, "wall s": wall, "ratio": wall / base})
print(f"Machine: {machine()}; default batch, --jobs {args.jobs}; median of {args.repeat}")
print(table(rows, ["batch", "wall s", "ratio"]))
audited = last[f"under {args.rule} (audited)"]
print("\nWhat the audit withheld beyond the rule (disclosure.json of each run):")
for f in sorted(audited.glob("*/*/disclosure.json")):
    audit = json.loads(f.read_text()).get("audit") or {}
    for w in audit.get("withheld", []):
        print(f"- {f.parent.name}: {w['table']}: {w['withheld']}")
    for u in audit.get("follows_from_earlier_releases", []):
        print(f"- {f.parent.name}: to check: {u['what'][:160]}")
