"""Run every benchmark in turn (minutes): generator, figures at scale, batch."""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
for script in ("bench_synth.py", "bench_figures.py", "bench_batch.py"):
    print(f"\n## {script}\n", flush=True)
    subprocess.run([sys.executable, str(here / script), *sys.argv[1:]], check=True, cwd=here.parent)
