"""Generator throughput and peak memory. Usage: python benchmarks/bench_synth.py [--sizes ...]"""

import argparse
import hashlib
import shutil

from measure import OUT, PY, ROOT, machine, measure, table

ap = argparse.ArgumentParser()
ap.add_argument("--sizes", type=int, nargs="+", default=[2503, 1_000_000, 10_000_000])
args = ap.parse_args()
rows = []
for n in args.sizes:
    out = OUT / f"bench_synth_{n}"
    shutil.rmtree(out, ignore_errors=True)
    m = measure([PY, "-m", "analysis", "synth", "--patients", str(n), "--out", str(out)], cwd=ROOT)
    size = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    digest = hashlib.sha256((out / "patients.parquet").read_bytes()).hexdigest()[:12]
    rows.append(
        {
            "patients": n,
            "wall s": m["wall_s"],
            "peak MB": m["peak_mb"],
            "patients / s": n / m["wall_s"],
            "files MB": size,
            "patients.parquet sha256": digest,
        }
    )
    if n > 100_000:
        shutil.rmtree(out, ignore_errors=True)
print(f"Machine: {machine()}")
print(
    table(
        rows,
        ["patients", "wall s", "peak MB", "patients / s", "files MB", "patients.parquet sha256"],
    )
)
