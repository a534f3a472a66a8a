"""Execute a batch: worker processes run the notebooks with papermill and write each run's
folder atomically; the index page, the release sheet and the summary follow."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from analysis import paths
from analysis.batch.checked import notebook_sha256, papermill_parameters, project_notebook
from analysis.batch.index import render_index
from analysis.batch.kernels import worker_kernel
from analysis.batch.manifest import _now, _write_json, package_versions, sha256_file
from analysis.batch.plan import (
    MANIFEST,
    Batch,
    Run,
    _refuse_foreign_files,
    _refuse_other_data,
    _release,
    _stale_temporaries,
    _synthetic,
    ensure_kernel,
    load_batch,
    plan,
    run_parameters,
)
from analysis.credentials import write_problem_log
from analysis.cube_store import ENV as CUBES_ENV
from analysis.data import open_database
from analysis.engines import is_url, redact
from analysis.errors import AnalysisError
from analysis.files import atomic_write_text
from analysis.methods import write_batch_methods
from analysis.notebook import HIDE_TAGS, resolve
from analysis.outputs import inside, ledger
from analysis.outputs.ledger import DEFINITION, TURN_ENV
from analysis.outputs.release import write_release_sheet
from analysis.params import Params


def execute_run(
    run: Run,
    batch_out: str,
    key: str,
    code: dict,
    data_fp: dict,
    show_code: bool,
    turn: dict | None = None,
    cubes: str | None = None,
) -> dict:
    """Execute one run in a worker process; returns its summary. Never raises. ``turn``:
    the batch's order for the disclosure audit (:mod:`analysis.outputs.ledger`); ``cubes``:
    the batch's store of cube query results (:mod:`analysis.cube_store`)."""
    final = inside(batch_out, Path(batch_out) / run.name)
    tmp = inside(batch_out, Path(batch_out) / f".tmp-{run.name}-{os.getpid()}")
    failed_dir = inside(batch_out, Path(batch_out) / f"{run.name}.failed")
    if tmp.is_symlink():  # never followed: the link itself goes
        tmp.unlink()
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()  # exclusive: fails if anything appeared under that name
    started = _now()
    t0 = time.perf_counter()
    params = run_parameters(run, final)
    inject = dict(params)
    inject["output_dir"] = str(tmp)
    status, error = "ok", None
    timings = {}
    try:
        with _run_log(tmp / "run.log"):
            # the kernel's environment: the batch's turn for the disclosure audit (or none),
            # the batch's cube store (or none)
            env = {TURN_ENV: json.dumps(turn) if turn is not None else None, CUBES_ENV: cubes}
            try:
                timings["execute_s"] = _execute(run, tmp, inject, batch_out, env)
            except Exception as exc:  # PapermillExecutionError for a cell error
                status = "failed"
                error = _describe_error(exc)
            finally:  # what the kernel process itself wrote during the run
                sys.stderr.write(worker_kernel().new_log())
                sys.stderr.flush()
    finally:
        if turn is not None:  # its notebook has ended: every release is in the ledger
            ledger.mark_done(batch_out, turn["exec"], run.name)
    if status == "ok" and not (tmp / "results.csv").exists():
        status = "failed"
        error = {
            "cell": None,
            "error": f"{run.notebook} wrote no results.csv: its last cell must call run.finish()",
        }
    executed = tmp / f"{run.notebook}.ipynb"
    if executed.exists():
        t = time.perf_counter()
        try:
            _write_html(
                executed,
                tmp / f"{run.notebook}.html",
                show_code,
                stamp=run.release == "NOT FOR RELEASE",
            )
        except Exception as exc:
            if status == "ok":
                status, error = "failed", {"cell": None, "error": f"HTML conversion: {exc}"}
        timings["html_s"] = round(time.perf_counter() - t, 3)
        _rewrite_paths(executed, tmp, final)
    manifest = _manifest(run, batch_out, key, code, data_fp, params)
    manifest.update(
        status=status,
        error=error,
        started=started,
        finished=_now(),
        timings={**timings, "total_s": round(time.perf_counter() - t0, 3)},
    )
    detail = None
    if status != "ok" and not manifest["data_is_synthetic"]:
        detail, error = error, _withhold(run, tmp, manifest)
    _write_json(tmp / MANIFEST, manifest)
    _move_into_place(tmp, final if status == "ok" else failed_dir, final, failed_dir)
    return {
        "run": run.name,
        "notebook": run.notebook,
        "scenario": run.scenario,
        "status": status,
        "seconds": round(time.perf_counter() - t0, 2),
        "error": error,
        "detail": detail,
    }


def _withhold(run: Run, tmp: Path, manifest: dict) -> dict:
    """A failed run on data not marked synthetic: the error and the executed notebook may
    quote patient values, so the folder keeps only how to see them; the manifest's error."""
    error = manifest["error"]
    manifest["error"] = {
        "cell": error.get("cell") if error else None,
        "error": "withheld: the data are not marked synthetic (see the terminal)",
    }
    for f in tmp.iterdir():
        shutil.rmtree(f) if f.is_dir() else f.unlink()
    atomic_write_text(tmp / "README.txt", _how_to_see(run))
    return manifest["error"]


def _move_into_place(tmp: Path, target: Path, final: Path, failed_dir: Path) -> None:
    """The complete run folder renamed to ``target`` (the run's folder, or ``<run>.failed``),
    replacing what an earlier run left there."""
    if target == final and final.exists():
        shutil.rmtree(final)
    shutil.rmtree(failed_dir, ignore_errors=True)
    tmp.rename(target)


@contextlib.contextmanager
def _run_log(log_path: Path):
    """The run's log: this worker's stderr (sent here; the kernel's own stderr is appended
    to it after the run, :meth:`WarmKernel.new_log`), and papermill's messages (the cells'
    outputs among them), but its warning of parameters the notebook's cell
    does not list (the notebook takes any parameter of the set and refuses unknown names
    itself, so the warning is noise)."""
    import logging

    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved_stderr = os.dup(2)
    os.dup2(log_fd, 2)
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    pm_log = logging.getLogger("papermill")
    handler.addFilter(lambda rec: "Passed unknown parameter" not in rec.getMessage())
    pm_log.addHandler(handler)
    pm_log.setLevel(logging.INFO)
    try:
        yield
    finally:
        pm_log.removeHandler(handler)
        handler.close()
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(log_fd)


def _execute(run: Run, tmp: Path, inject: dict, batch_out, env: dict) -> float:
    """Execute the run's notebook with papermill into ``tmp`` on this worker's warm kernel
    (:mod:`analysis.batch.kernels`), ``env`` added to the kernel's environment; its seconds."""
    source = f"Batch {Path(batch_out).name}, run {run.name}"
    nb_path = project_notebook(run.notebook, source=source)
    inject = papermill_parameters(inject, source=source)
    t = time.perf_counter()
    worker_kernel().execute(
        nb_path,
        tmp / f"{run.notebook}.ipynb",
        inject,
        env=env,
        log_output=True,
        request_save_on_cell_execute=False,
    )
    return round(time.perf_counter() - t, 3)


def _manifest(run: Run, batch_out, key: str, code: dict, data_fp: dict, params: dict) -> dict:
    """How the run was made: notebook, scenario, data, parameters, fingerprints, versions
    (its status, error and times are added by :func:`execute_run`)."""
    return {
        "batch": Path(batch_out).name,
        "run": run.name,
        "notebook": run.notebook,
        "notebook_sha256": notebook_sha256(run.notebook_path),
        "scenario": run.scenario,
        "data_source": run.source,
        "data_is_synthetic": _synthetic(run.data),
        "release": run.release or _release(run),
        "parameters": params,
        "resolved_parameters": Params.from_mapping(
            {k: v for k, v in run.overrides.items() if k in Params.names()}
        ).to_dict(),
        "input_fingerprint": data_fp,
        "code_fingerprint": code,
        "lock_sha256": sha256_file(paths.LOCK_FILE) if paths.LOCK_FILE.exists() else None,
        "run_key": key,
        "packages": package_versions(),
    }


def _how_to_see(run: Run) -> str:
    data = redact(str(resolve(run.data)))
    return (
        f"This run ({run.name}) failed on data not marked synthetic. What went wrong may quote a "
        "patient's values, so it is not kept here; it was printed to the terminal that ran the "
        "batch "
        "and written to a log outside the report folder. To see it again:\n\n"
        f"    python -m analysis figures --data {data}\n\n"
        f"or run the notebook notebooks/{run.notebook}.ipynb on that data in JupyterLab.\n"
    )


def _describe_error(exc) -> dict:
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    cell = getattr(exc, "exec_count", None)
    first = str(evalue).strip().splitlines()[0] if str(evalue).strip() else ""
    return {"cell": cell, "error": f"{ename}: {first}"[:500]}


NOT_FOR_RELEASE = (
    "<div style='background:#b00020;color:white;padding:10px 14px;font:bold 16px sans-serif'>"
    "NOT FOR RELEASE: data not marked synthetic, disclosure control off. Unrounded "
    "counts for checking inside the secure environment only.</div>"
)


def _write_html(nb_path: Path, html_path: Path, show_code: bool, stamp: bool = False) -> None:
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    nb = nbformat.read(nb_path, as_version=4)
    exporter = HTMLExporter(
        exclude_input=not show_code,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        optimistic_validation=True,  # validate once, not after every preprocessor (nbconvert #1663)
    )
    # sections the run said have nothing to show (one practice: no funnel, no forest plot)
    hide = {
        tag
        for cell in nb.cells
        for out in cell.get("outputs", [])
        for tag in (out.get("metadata") or {}).get(HIDE_TAGS, [])
        if isinstance(tag, str)
    }
    if hide:
        exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags=hide), enabled=True)
    body, _ = exporter.from_notebook_node(nb)
    if stamp:
        body = body.replace("<body", "<body data-release='not-for-release'", 1)
        i = body.find(">", body.find("<body")) + 1
        body = body[:i] + NOT_FOR_RELEASE + body[i:]
    atomic_write_text(html_path, body)


def _rewrite_paths(nb_path: Path, tmp: Path, final: Path) -> None:
    """The executed notebook records the temporary folder; record the final one instead."""
    text = nb_path.read_text(encoding="utf-8")
    atomic_write_text(nb_path, text.replace(str(tmp), str(final)))


def run_batch(
    batch: Batch,
    *,
    jobs: int | None = None,
    only: str | None = None,
    force: bool = False,
    show_code: bool | None = None,
    progress: bool = True,
) -> list[dict]:
    """Execute the batch; returns one summary row per selected run."""
    real = [r for r in batch.runs if not _synthetic(r.data)]
    _refuse_real_outputs_in_the_project(batch, real)
    _refuse_foreign_files(batch)  # first: links are refused before any file is read
    _refuse_other_data(batch)
    ensure_kernel()
    batch.out.mkdir(parents=True, exist_ok=True)
    for stale in _stale_temporaries(batch):  # left by an interrupted batch
        shutil.rmtree(stale, ignore_errors=True)
    planned = plan(batch, only=only, force=force)
    show = batch.show_code if show_code is None else show_code
    results = [_up_to_date(batch, run) for run, *_, fresh in planned if fresh]
    todo = [(run, key, code, fp) for run, key, code, fp, fresh in planned if not fresh]
    jobs = max(1, jobs or default_jobs(batch))
    methods_written = False
    if len(todo) == 1:  # a changed run alone (one scenario edited): no worker to start
        methods_written = _execute_here(batch, todo[0], results, show)
    elif todo:
        methods_written = _execute_in_pool(batch, todo, planned, results, show, jobs, progress)
    results.sort(key=_batch_order(batch))
    _report_failures_on_real_data(batch, results)
    if not methods_written and (todo or not (batch.out / "methods.md").exists()):
        _write_methods(batch, results)  # nothing ran (or no worker could): computed here
    write_index(batch)
    if real:
        write_release_sheet(batch)
    return results


def default_jobs(batch: Batch) -> int:
    """Worker processes when none are asked: one per core, but a kernel that reads a Spark
    source ``spark://local[K]`` runs K threads of its own (its session stays in the warm
    kernel), so the cores are divided by the largest K (on 2 cores, the scenario runs of
    the default batch on Spark local[2]: 49 s with one worker, 60 s with two)."""
    import re

    cores = os.cpu_count() or 1
    threads = 1
    for run in batch.runs:
        m = re.match(r"spark://local(\[(\d+|\*)\])?", str(run.data))
        if m and m.group(1):  # local[K] or local[*] (plain "local" is one thread)
            threads = max(threads, cores if m.group(2) == "*" else int(m.group(2)))
    return max(1, cores // threads)


def _batch_order(batch: Batch):
    order = {r.name: i for i, r in enumerate(batch.runs)}
    return lambda r: order.get(r["run"], 0)


def _execute_in_pool(batch, todo, planned, results, show, jobs, progress) -> bool:
    """Execute ``todo`` in worker processes (each with its warm kernel), appending each
    run's summary to ``results`` as it ends; then the batch's methods text, in a worker's
    kernel (where the data's engine already runs). Returns whether that text was written."""
    import multiprocessing as mp
    import uuid

    from tqdm import tqdm

    # a bar on a terminal; plain lines (one per finished run) in logs and pipes
    tty = sys.stderr.isatty()
    bar = tqdm(total=len(todo), desc=f"batch {batch.name}", unit="run",
               disable=not progress or not tty, file=sys.stderr)  # fmt: skip
    # the disclosure audit reads what runs before each released, in the batch's order
    # (only those on the same data under the same definitions share a ledger)
    exec_id = uuid.uuid4().hex
    ledger.start_execution(batch.out, exec_id)
    turns = [
        {"exec": exec_id, "before": [r.name for r, *_ in todo[:k] if _one_ledger(r, run)]}
        for k, (run, *_) in enumerate(todo)
    ]
    # the runs' shared cube query results: private to this batch, gone when it ends
    cubes = tempfile.mkdtemp(prefix="analysis-cubes-")
    with ProcessPoolExecutor(
        max_workers=min(jobs, len(todo)),
        mp_context=mp.get_context("spawn"),
        initializer=_worker_init,
        initargs=(os.getpid(),),
    ) as pool:
        futures = {
            pool.submit(execute_run, run, str(batch.out), key, code, fp, show, turn, cubes): run
            for (run, key, code, fp), turn in zip(todo, turns, strict=True)
        }
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    run = futures[fut]
                    ledger.mark_done(batch.out, exec_id, run.name)
                    try:
                        results.append(fut.result())
                    except Exception as exc:  # a killed worker
                        results.append(_worker_died(run, exc))
                    bar.update(1)
                    if progress and not tty:
                        r = results[-1]
                        print(f"[{len(results)}/{len(planned)}] {r['run']}: {r['status']} "
                              f"({r['seconds']:.1f} s)", file=sys.stderr, flush=True)  # fmt: skip
            results.sort(key=_batch_order(batch))
            spec = _methods_spec(batch, results)
            return pool.submit(_write_methods_in_kernel, spec, cubes).result()
        except KeyboardInterrupt:
            for f in pending:
                f.cancel()
            for proc in list((pool._processes or {}).values()):  # workers stop with the batch
                proc.terminate()
            raise
        except Exception:  # a broken pool: the methods are computed in this process
            return False
        finally:
            bar.close()
            ledger.end_execution(batch.out, exec_id)
            shutil.rmtree(cubes, ignore_errors=True)


def _execute_here(batch, todo, results, show) -> bool:
    """One run to execute: in this process, on its warm kernel (a parked one when an
    earlier batch left it, :meth:`WarmKernel.retire`), then the methods text; as a worker
    would, without starting one. Returns True (the methods text was handled)."""
    import uuid

    run, key, code, fp = todo
    kernel = worker_kernel()
    try:
        kernel.launch()  # claimed or started while papermill and nbconvert are imported
        exec_id = uuid.uuid4().hex
        ledger.start_execution(batch.out, exec_id)
        cubes = tempfile.mkdtemp(prefix="analysis-cubes-")
        try:
            turn = {"exec": exec_id, "before": []}
            results.append(execute_run(run, str(batch.out), key, code, fp, show, turn, cubes))
            results.sort(key=_batch_order(batch))
            return _write_methods_in_kernel(_methods_spec(batch, results), cubes)
        finally:
            ledger.end_execution(batch.out, exec_id)
            shutil.rmtree(cubes, ignore_errors=True)
    except BaseException:  # interrupted: the kernel may be mid-cell, it is not kept
        kernel.close()
        raise


def _methods_spec(batch: Batch, results: list[dict]) -> str:
    """What :func:`analysis.methods.write_batch_methods_spec` needs, as JSON."""
    return json.dumps(
        {
            "name": batch.name,
            "out": str(batch.out),
            # data paths as the runs get them (the kernel works in the notebooks' folder)
            "runs": [{**dataclasses.asdict(r), "data": _absolute(r.data)} for r in batch.runs],
            "results": [{"run": r["run"], "status": r["status"]} for r in results],
        }
    )


def _absolute(data: str) -> str:
    """A data source for a kernel (which works in the notebooks' folder): a URL as it is,
    a path absolute."""
    found = resolve(data)
    return found if is_url(found) else str(Path(found).absolute())


def _write_methods_in_kernel(spec: str, cubes: str) -> bool:
    """In a worker: the batch's methods text computed and written by its warm kernel; a
    failure is reported without data values and does not stop the index (True: done)."""
    try:
        worker_kernel().call(
            "analysis.methods", "write_batch_methods_spec", spec,
            env={TURN_ENV: None, CUBES_ENV: cubes},
        )  # fmt: skip
    except AnalysisError as exc:
        _no_methods(Path(json.loads(spec)["out"]), str(exc))
    return True


def _refuse_real_outputs_in_the_project(batch: Batch, real: list) -> None:
    """Outputs of data not marked synthetic go under reports/ (git-ignored), never
    elsewhere in the project."""
    out = batch.out.resolve()
    if (
        real
        and out.is_relative_to(paths.ROOT.resolve())
        and not out.is_relative_to(paths.REPORTS.resolve())
    ):
        raise AnalysisError(
            f"Batch {batch.name} reads data not marked synthetic: its outputs must go under "
            f"{paths.REPORTS} (git-ignored), not {out}."
        )


def _up_to_date(batch: Batch, run: Run) -> dict:
    """The summary of a run not executed again (its inputs are unchanged)."""
    m = json.loads((batch.out / run.name / MANIFEST).read_text())
    return {
        "run": run.name,
        "notebook": run.notebook,
        "scenario": run.scenario,
        "status": "up to date",
        "seconds": 0.0,
        "error": None,
        "last_seconds": m.get("timings", {}).get("total_s"),
    }


def _worker_died(run: Run, exc: BaseException) -> dict:
    return {
        "run": run.name,
        "notebook": run.notebook,
        "scenario": run.scenario,
        "status": "failed",
        "seconds": 0.0,
        "error": {"cell": None, "error": f"worker died: {exc}"},
    }


def _report_failures_on_real_data(batch: Batch, results: list[dict]) -> None:
    """A run that failed on data not marked synthetic keeps no details in its files; they
    go to the terminal and a log outside the report folder: the run's error, and the data's
    validation problems when the data are what failed."""

    runs = {r.name: r for r in batch.runs}
    checked: dict[str, str] = {}
    for r in results:
        if not r.get("detail"):
            continue
        text = f"{r['run']}: cell {r['detail'].get('cell')}: {r['detail'].get('error')}"
        data = runs[r["run"]].data if r["run"] in runs else None
        if data is not None and data not in checked:
            try:
                open_database(resolve(data)).close()
                checked[data] = ""
            except AnalysisError as exc:
                checked[data] = str(exc)
        if data is not None and checked[data]:
            text += f"\nThe data's problems:\n{checked[data]}"
        path = write_problem_log(text, f"batch-{batch.name}")
        print(f"{text}\n(not written to the report folder; also in {path})", file=sys.stderr)


def _one_ledger(a: Run, b: Run) -> bool:
    """Whether two runs may release from one disclosure ledger (same data, same definition
    parameters): a run waits for the runs before it only where they do."""

    return a.data == b.data and all(a.overrides.get(k) == b.overrides.get(k) for k in DEFINITION)


def _worker_init(parent_pid: int) -> None:
    """A worker ends when the batch's own process ends, however it ends (killed too):
    Linux's parent-death signal, and a watchdog thread elsewhere. Its kernel follows it
    (ipykernel watches its parent)."""
    import signal
    import threading

    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()
    try:  # it boots and imports while this worker reads its first run
        worker_kernel().launch()
    except Exception:  # the first run starts one and says what failed
        worker_kernel().stop()


def summary_table(results: list[dict]) -> str:
    rows = [("run", "status", "seconds", "failure (notebook, cell, error)")]
    for r in results:
        err = ""
        if r.get("error"):
            err = f"{r['notebook']}, cell {r['error'].get('cell')}: {r['error'].get('error')}"
        rows.append((r["run"], r["status"], f"{r['seconds']:.1f}", err))
    w = [max(len(x[i]) for x in rows) for i in range(3)]
    lines = [
        f"{a.ljust(w[0])}  {b.ljust(w[1])}  {c.rjust(w[2])}  {d}".rstrip() for a, b, c, d in rows
    ]
    lines.insert(1, "-" * max(len(x) for x in lines))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- index page
def _write_methods(batch: Batch, results: list[dict]) -> None:
    """The batch's methods and results in words (``methods.md``, ``methods.html``); a
    failure here is reported without data values and does not stop the index."""

    try:
        write_batch_methods(batch, results)
    except Exception as exc:
        _no_methods(batch.out, type(exc).__name__)


def _no_methods(out: Path, why: str) -> None:
    """No methods text rather than a stale or partial one; said without data values."""
    for f in ("methods.md", "methods.html"):
        (out / f).unlink(missing_ok=True)
    print(f"warning: the methods text was not written ({why})", file=sys.stderr)


def write_index(batch: Batch) -> Path:
    html = render_index(batch)
    return atomic_write_text(batch.out / "index.html", html, within=batch.out)


def main_batch(path, jobs, only, force, show_code, reports=None, disclosure=None) -> int:
    import signal

    batch = load_batch(path, reports, disclosure)
    t = time.perf_counter()

    def _terminated(signum, frame):  # `kill` stops the batch as Ctrl-C does: workers with it
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminated)
    try:
        results = run_batch(batch, jobs=jobs, only=only, force=force, show_code=show_code)
    except KeyboardInterrupt:
        print(
            "\nInterrupted: completed runs are kept; run the same command again to resume.",
            file=sys.stderr,
        )
        return 130
    print(summary_table(results))
    n_fail = sum(r["status"] == "failed" for r in results)
    n_run = sum(r["status"] in ("ok", "failed") for r in results)
    print(
        f"\n{len(results)} run(s): {n_run} executed, {len(results) - n_run} up to date, "
        f"{n_fail} failed, in {time.perf_counter() - t:.1f} s."
    )
    print(f"Report: {batch.out / 'index.html'}")
    return 1 if n_fail else 0
