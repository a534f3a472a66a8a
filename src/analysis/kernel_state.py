"""What a kernel reused from run to run holds, and how it returns to it before each run.

A batch worker (:mod:`analysis.batch.kernels`) starts one kernel, imports :data:`PRELOAD`
in it once, calls :func:`remember` and then, before every run, :func:`reset`: the run starts
from the state a fresh kernel has after those imports, never from another run's. Reset:

* the user namespace, the input/output history and the execution count (IPython's
  ``reset(new_session=True)``): a run's cells are numbered from 1, as in a fresh kernel;
* matplotlib: every figure closed, ``rcParams`` back to the remembered values;
* pandas' options back to their defaults; warning filters, ``sys.path`` and the
  environment back to the remembered ones (plus the run's own variables); the working
  directory back to the notebooks' folder;
* every ``functools`` cache of the package's modules emptied (a code list read by run A
  is read again by run B: its file may have changed); Spark's temporary views and cached
  tables dropped (the session itself, a JVM, is kept);
* what is left unreachable collected.

Modules stay imported: that is the point. The warning filters that libraries add for their
own warning classes when imported (statsmodels' ``ConvergenceWarning``, ...) are in place
from the first run on, where a fresh kernel adds them on first import: a warning of such a
class cannot be raised before its module is imported, so no run shows another warning. A
module that keeps data in a global of its own would carry it over; the package keeps none
(its only caches are ``functools`` ones, above), and ``tests/test_warm_kernels.py`` plants
state of each kind in one run and looks for it in the next.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
import warnings

# what a worker's kernel imports once: the notebooks' imports and what the package imports
# on first use (statistics, figures, tables, engines); a run pays for none of them again
PRELOAD = (
    "analysis.audit",
    "analysis.eligibility",
    "analysis.notebook",
    "analysis.plots",
    "analysis.practices",
    "analysis.quality",
    "analysis.sensitivity",
    "analysis.statistics",
    "analysis.study",
    "analysis.outputs",
    "analysis.results",
    "analysis.methods",
    "IPython.display",
    "duckdb",
    "matplotlib.pyplot",
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "scipy.optimize",
    "scipy.special",
    "scipy.stats",
    "statsmodels.api",
)

_remembered: dict | None = None


def preload(names=PRELOAD) -> list[str]:
    """Import ``names`` (one that is not installed is skipped); the ones imported."""
    import importlib

    done = []
    for name in names:
        try:
            importlib.import_module(name)
            done.append(name)
        except ImportError:
            pass
    return done


def remember() -> None:
    """Remember the state every run starts from (call once, after :func:`preload`)."""
    global _remembered
    rc = None
    if "matplotlib" in sys.modules:
        rc = dict(sys.modules["matplotlib"].rcParams)
    _remembered = {
        "rc": rc,
        "warnings": list(warnings.filters),
        "environ": dict(os.environ),
        "path": list(sys.path),
        "cwd": os.getcwd(),
    }


def reset(env: dict[str, str | None] | None = None, environ: dict[str, str] | None = None) -> None:
    """Return the kernel to the remembered state (see the module docstring): its
    environment ``environ`` (the batch's, default: the remembered one), with ``env`` added
    (a None value removes the variable). Raises RuntimeError when :func:`remember` was not
    called."""
    if _remembered is None:
        raise RuntimeError("kernel_state.reset() before remember()")
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:
        shell.reset(new_session=True)
    _reset_matplotlib(_remembered["rc"])
    _reset_pandas()
    warnings.filters[:] = _remembered["warnings"]
    warnings._filters_mutated()
    sys.path[:] = _remembered["path"]
    os.environ.clear()
    os.environ.update(_remembered["environ"] if environ is None else environ)
    for name, value in (env or {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = str(value)
    os.chdir(_remembered["cwd"])
    _clear_package_caches()
    _reset_spark()
    gc.collect()


def _reset_matplotlib(rc: dict | None) -> None:
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
    if rc is not None and "matplotlib" in sys.modules:
        # as matplotlib's own rc_context restores them: no validation, no warnings
        dict.update(sys.modules["matplotlib"].rcParams, rc)


def _reset_pandas() -> None:
    if "pandas" not in sys.modules:
        return
    with warnings.catch_warnings():  # deprecated options warn when set, even to defaults
        warnings.simplefilter("ignore")
        sys.modules["pandas"].reset_option("all")


def _clear_package_caches() -> None:
    """Empty every ``functools.lru_cache``/``cache`` of the package's modules."""
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "analysis" or name.startswith("analysis.")):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, functools._lru_cache_wrapper):
                value.cache_clear()


def _reset_spark() -> None:
    """Drop a Spark session's temporary views and cached tables (the session stays)."""
    if "pyspark.sql" not in sys.modules:
        return
    session = sys.modules["pyspark.sql"].SparkSession.getActiveSession()
    if session is None:
        return
    for table in session.catalog.listTables():
        if table.isTemporary:
            session.catalog.dropTempView(table.name)
    session.catalog.clearCache()


# ----------------------------------------------------------------------------- its owner
# A kernel is owned by one batch worker at a time. A worker that ends may leave it parked
# for the next batch (analysis.batch.kernels): it waits ``seconds`` for a claim, then ends.
# A kernel whose owner is gone, and that is not parked, ends too (within a second).
_owner: dict = {"pid": None, "until": None, "ticket": None, "since": 0.0}
_ORPHAN_SECONDS = 30.0  # ownerless and not parked (a claim that never came): then it ends


def watch(owner_pid: int) -> None:
    """``owner_pid`` owns this kernel from now on: it ends when that process does."""
    import time

    _owner.update(pid=int(owner_pid), until=None, ticket=None, since=time.monotonic())
    _start_watchdog()


def park(seconds: float, ticket: str) -> None:
    """No owner now: wait ``seconds`` for a batch to claim ``ticket`` (by renaming it), then
    end (after removing the ticket, so that none is claimed late)."""
    import time

    now = time.monotonic()
    _owner.update(pid=None, until=now + float(seconds), ticket=str(ticket), since=now)
    _start_watchdog()


def _start_watchdog() -> None:
    import threading

    if any(t.name == "analysis-owner-watch" for t in threading.enumerate()):
        return
    threading.Thread(target=_watchdog, name="analysis-owner-watch", daemon=True).start()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs: it exists, is this user's, and is not a zombie (ended
    but not yet reaped by its parent)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or another user's: not ours
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (macOS): existing is running
        return True


def _watchdog() -> None:
    import time

    while True:
        time.sleep(0.5)
        now = time.monotonic()
        pid, until, ticket = _owner["pid"], _owner["until"], _owner["ticket"]
        if pid is not None:
            if not pid_alive(pid):
                os._exit(0)  # its worker is gone (killed, interrupted): so is the kernel
        elif until is not None:
            if now >= until:
                try:  # still unclaimed: take the ticket back, then end
                    os.rename(ticket, ticket + ".expired")
                    os.unlink(ticket + ".expired")
                except OSError:  # claimed meanwhile: the claimer's watch() follows
                    _owner.update(until=None, since=now)
                    continue
                os._exit(0)
        elif now - _owner["since"] > _ORPHAN_SECONDS:
            os._exit(0)
