"""The default batch against a plain loop of `papermill` and `jupyter nbconvert --to html`
commands, and against the computation alone, side by side in one script run (issue 29).

Measured, each ``--repeat`` times (medians; the runs of one repetition interleaved):

* plain loop: one `papermill` and one `jupyter nbconvert --to html --no-input` command per
  run, one after another (a fresh process and a fresh kernel each);
* `analysis batch --force` (cold: every run executed), ``--jobs`` workers;
* computation only: every run's notebook, one after another, on one kernel whose imports
  are done (no HTML, no manifests, no folders moved); reported as its wall time and as the
  sum of the runs' cell times (papermill's per-cell durations);
* one scenario changed: the batch file with one scenario's parameter changed, after a
  complete batch (only that run is executed again; on a kernel the batch before left);
* an unchanged re-run (nothing executed).

``--against DIR`` runs the batch (cold and one scenario changed) also from another checkout
of the project (a worktree of an earlier commit: ``git worktree add DIR COMMIT``, with the
synthetic data built there), with this environment's Python and that checkout's package,
and compares the two batches' outputs: every table, figure and text file byte for byte,
and every manifest apart from times, the code's fingerprint and the run key.

Usage: python benchmarks/bench_batch.py [--jobs N] [--repeat 3] [--against DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from measure import PY, ROOT, machine, table

sys.path.insert(0, str(ROOT / "src"))
from analysis.batch import load_batch, run_parameters  # noqa: E402
from analysis.batch.kernels import WarmKernel  # noqa: E402

# the scenario changed for "one scenario changed", and its new value
CHANGED = ("elderly_80", "elderly_age", 85)


def _env(root: Path, runtime: Path) -> dict:
    """The environment that runs ``root``'s package (its src first on the path), with
    Jupyter's runtime folder ``runtime``: a new one per repetition, so that a cold batch
    finds no kernel parked by the repetition before (the batch after it does)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root / "src")
    env["JUPYTER_RUNTIME_DIR"] = str(runtime)
    env.pop("ANALYSIS_KEEP_KERNELS", None)  # the default: kernels wait for the next batch
    return env


def batch(root: Path, batch_file: Path, reports: Path, jobs, force=False) -> float:
    cmd = [PY, "-m", "analysis", "batch", str(batch_file), "--reports", str(reports)]
    cmd += (["--jobs", str(jobs)] if jobs else []) + (["--force"] if force else [])
    env = _env(root, reports.with_name(reports.name + "-runtime"))
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return time.perf_counter() - t


def changed_scenario_file(src: Path, folder: Path) -> Path:
    """The batch file with :data:`CHANGED` applied (same name: same report folder)."""
    raw = yaml.safe_load(src.read_text())
    scenario, name, value = CHANGED
    raw["scenarios"][scenario] = {**(raw["scenarios"][scenario] or {}), name: value}
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / src.name
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def plain_loop(runs, folder: Path) -> float:
    t = time.perf_counter()
    for run in runs:
        out = folder / run.name
        out.mkdir(parents=True)
        cmd = [PY, "-m", "papermill", str(run.notebook_path), str(out / f"{run.notebook}.ipynb")]
        cmd += ["-k", "analysis", "--cwd", str(ROOT / "notebooks")]
        for k, v in run_parameters(run, out).items():
            cmd += ["-y", json.dumps({k: v})]
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        html = [PY, "-m", "jupyter", "nbconvert", "--to", "html", "--no-input"]
        subprocess.run([*html, str(out / f"{run.notebook}.ipynb")], check=True,
                       capture_output=True, cwd=ROOT)  # fmt: skip
    return time.perf_counter() - t


def computation_only(runs, folder: Path) -> tuple[float, float]:
    """(wall seconds, sum of the runs' cell seconds): every run on one warm kernel."""
    import logging

    # the notebooks take any parameter of the set (the batch filters this warning too)
    logging.getLogger("papermill").setLevel(logging.ERROR)
    cells = 0.0
    with WarmKernel() as kernel:
        kernel.prepare()  # started and imports done before the clock starts
        t = time.perf_counter()
        for run in runs:
            out = folder / run.name
            out.mkdir(parents=True)
            nb = kernel.execute(run.notebook_path, out / f"{run.notebook}.ipynb",
                                run_parameters(run, out))  # fmt: skip
            cells += sum(c.metadata.papermill.duration or 0 for c in nb.cells
                         if c.cell_type == "code")  # fmt: skip
        return time.perf_counter() - t, cells


NOT_COMPARED = {"started", "finished", "timings", "code_fingerprint", "run_key"}


def compare(a: Path, b: Path) -> tuple[int, list[str]]:
    """(files compared, those that differ) between two batch folders: tables, figures,
    results, text byte for byte; manifests apart from :data:`NOT_COMPARED` (report
    folders written as <reports>)."""
    compared, differ = 0, []
    for f in sorted(a.rglob("*")):
        rel = f.relative_to(a)
        other = b / rel
        if f.suffix in (".csv", ".png", ".svg", ".md"):
            compared += 1
            if not other.exists() or other.read_bytes() != f.read_bytes():
                differ.append(str(rel))
        elif f.name == "manifest.json":
            compared += 1
            ma = json.loads(f.read_text().replace(str(a.parent), "<reports>"))
            mb = json.loads(other.read_text().replace(str(b.parent), "<reports>"))
            for m in (ma, mb):
                for k in NOT_COMPARED:
                    m.pop(k, None)
            if ma != mb:
                differ.append(str(rel))
    return compared, differ


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", default=str(ROOT / "batches" / "paper.yaml"))
    ap.add_argument("--against", type=Path, default=None, help="another checkout to compare")
    args = ap.parse_args()
    os.environ["ANALYSIS_KEEP_KERNELS"] = "off"  # this process's own kernel (computation only)
    batch_file = Path(args.batch)
    runs = load_batch(batch_file).runs
    roots = {"this": ROOT} | ({"against": args.against.resolve()} if args.against else {})
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    times: dict[str, list[float]] = {}

    def record(what, seconds):
        times.setdefault(what, []).append(seconds)

    for rep in range(args.repeat):
        for label, root in roots.items():
            reports = work / f"{label}-{rep}"
            record(f"{label}: cold", batch(root, batch_file, reports, args.jobs, force=True))
            changed = changed_scenario_file(batch_file, work / f"{label}-{rep}-file")
            record(f"{label}: one scenario changed", batch(root, changed, reports, args.jobs))
            record(f"{label}: unchanged re-run", batch(root, changed, reports, args.jobs))
        wall, cells = computation_only(runs, work / f"computation-{rep}")
        record("computation only (wall)", wall)
        record("computation only (the runs' cells)", cells)
        record("plain loop", plain_loop(runs, work / f"loop-{rep}"))

    med = {k: statistics.median(v) for k, v in times.items()}
    loop = med["plain loop"]
    rows = [
        {
            "what": k,
            "median s": med[k],
            "range s": f"{min(v):.1f}-{max(v):.1f}",
            "loop / this": loop / med[k],
        }
        for k, v in times.items()
    ]
    print(f"Machine: {machine()}; {len(runs)} runs; jobs {args.jobs or os.cpu_count()}; "
          f"{args.repeat} repetitions")  # fmt: skip
    print(table(rows, ["what", "median s", "range s", "loop / this"]))
    comp = med["computation only (wall)"]
    print(f"\ncold batch / computation only (wall): {med['this: cold'] / comp:.2f}")
    if args.against:
        a = med["this: one scenario changed"]
        b = med["against: one scenario changed"]
        print(f"one scenario changed: this {a:.1f} s, against {b:.1f} s ({a / b:.2f})")
        name = load_batch(batch_file).name
        n, differ = compare(work / "this-0" / name, work / "against-0" / name)
        print(f"outputs compared with the other checkout's: {n} files, {len(differ)} differ"
              + (f": {', '.join(differ[:10])}" if differ else ""))  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
