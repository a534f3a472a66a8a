"""Run every benchmark in turn (minutes): generator, figures at scale, batch, and the
profile of `figures` at 10 million patients. Arguments go to the first three."""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
for script, argv in (
    ("bench_synth.py", sys.argv[1:]),
    ("bench_figures.py", sys.argv[1:]),
    ("bench_batch.py", sys.argv[1:]),
    ("profile_figures.py", []),
):
    print(f"\n## {script}\n", flush=True)
    subprocess.run([sys.executable, str(here / script), *argv], check=True, cwd=here.parent)
