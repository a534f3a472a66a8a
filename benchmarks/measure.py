"""Run a command as a whole process and measure its wall time and peak resident memory."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
PY = sys.executable


def measure(cmd: list[str], **kw) -> dict:
    """Wall seconds and peak RSS (MB, from /usr/bin/time -v, children included)."""
    time_bin = shutil.which("time") or "/usr/bin/time"
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as tf:
        t = time.perf_counter()
        r = subprocess.run(
            [time_bin, "-v", "-o", tf.name, *cmd], capture_output=True, text=True, **kw
        )
        wall = time.perf_counter() - t
        text = Path(tf.name).read_text()
    peak_kb = next(
        (
            int(line.split(":")[1])
            for line in text.splitlines()
            if "Maximum resident set size" in line
        ),
        0,
    )
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr[-2000:]}")
    return {"wall_s": wall, "peak_mb": peak_kb / 1024, "stdout": r.stdout}


def synthetic(n: int, seed: int = 20160601, practices: int = 1) -> Path:
    """A synthetic cohort of n patients (in ``practices`` practices) under benchmarks/out
    (generated once)."""
    folder = OUT / (f"synthetic_{n}_{seed}" + (f"_{practices}p" if practices > 1 else ""))
    if not (folder / "dataset.json").exists():
        subprocess.run(
            [
                PY,
                "-m",
                "analysis",
                "synth",
                "--patients",
                str(n),
                "--practices",
                str(practices),
                "--seed",
                str(seed),
                "--out",
                str(folder),
            ],
            check=True,
            cwd=ROOT,
        )
    return folder


def growth_exponent(ns, ts) -> float:
    """Slope of log(time) on log(n): 1 is linear."""
    xs = [math.log(n) for n in ns]
    ys = [math.log(t) for t in ts]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


def machine() -> str:
    import platform

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    py = platform.python_version()
    return f"{platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GB, Python {py}"


def table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:,.2f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    w = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    out = [
        "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(cols)) + " |",
        "|" + "|".join("-" * (x + 2) for x in w) + "|",
    ]
    out += ["| " + " | ".join(x[i].rjust(w[i]) for i in range(len(cols))) + " |" for x in cells]
    return "\n".join(out)
