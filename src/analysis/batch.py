"""Batch report generation: notebooks x scenarios (x data sources) with papermill.

A batch file (YAML) names the runs; ``python -m analysis batch`` executes them in worker
processes and writes, per run, ``reports/<batch>/<run>/``: the executed notebook, its HTML,
figures, tables, a log and ``manifest.json``; and an ``index.html`` for the batch.

Safety: every run's parameters are checked before the first run starts; each run is
written to a hidden temporary folder and renamed into place only when complete; a run
whose notebook, parameters, module code and input data are unchanged is skipped (unless
``force``), so an interrupted batch resumes where it stopped. The batch only runs
notebooks: it never computes a statistic itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from analysis import paths
from analysis.errors import AnalysisError
from analysis.notebook import check_notebook_parameters, resolve
from analysis.params import Params

MANIFEST = "manifest.json"
KERNEL = "analysis"


@dataclass(frozen=True)
class Run:
    name: str
    notebook: str
    scenario: str
    source: str
    data: str
    overrides: dict = field(default_factory=dict)
    release: str = ""  # synthetic data / aggregates under disclosure control / NOT FOR RELEASE

    @property
    def notebook_path(self) -> Path:
        return paths.NOTEBOOKS / f"{self.notebook}.ipynb"


@dataclass
class Batch:
    name: str
    path: Path
    runs: list[Run]
    show_code: bool = False
    reports: Path | None = None  # parent folder of the batch's output (default: reports/)

    @property
    def out(self) -> Path:
        return Path(self.reports or paths.REPORTS) / self.name


# ----------------------------------------------------------------------------- loading
def load_batch(
    path: str | Path | None = None, reports: str | Path | None = None, disclosure: str | None = None
) -> Batch:
    """Read a batch file and check every run's parameters before anything runs."""
    import yaml

    path = Path(path or paths.BATCHES / "paper.yaml")
    if not path.exists():
        raise AnalysisError(f"Batch file {path} does not exist.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise AnalysisError(f"Batch file {path} is not valid YAML: {exc}") from None
    from analysis.credentials import refuse_passwords_in

    refuse_passwords_in(raw, f"Batch file {path}")
    allowed = {"name", "description", "data", "data_sources", "scenarios", "runs", "show_code"}
    extra = set(raw) - allowed
    if extra:
        raise AnalysisError(
            f"Batch file {path}: unknown key(s) {', '.join(sorted(extra))}; "
            f"expected {', '.join(sorted(allowed))}."
        )
    from analysis.credentials import refuse_passwords
    from analysis.outputs import safe_name

    sources = raw.get("data_sources") or {"default": raw.get("data") or "data/synthetic"}
    scenarios = raw.get("scenarios") or {"default": {}}
    if not isinstance(sources, dict) or not isinstance(scenarios, dict):
        raise AnalysisError(
            f"Batch file {path}: data_sources and scenarios must be mappings of name: value."
        )
    # first the secrets (never echoed), then the names (they become folder names)
    refuse_passwords({f"data source {k}": v for k, v in sources.items()}, f"Batch file {path}")
    for scen, overrides in scenarios.items():
        if overrides is not None and not isinstance(overrides, dict):
            raise AnalysisError(
                f"Batch file {path}: scenario {safe_name(scen, 'Scenario name')} must be a "
                "mapping of parameter: value."
            )
        refuse_passwords(
            overrides or {}, f"Batch file {path}, scenario {safe_name(scen, 'Scenario name')}"
        )
    name = safe_name(raw.get("name") or path.stem, f"Batch file {path}: batch name")
    for src_name in sources:
        safe_name(src_name, f"Batch file {path}: data source name")
    scenarios = {k: _normalized(v or {}) for k, v in scenarios.items()}
    if disclosure:  # the command line's --disclosure applies to every scenario
        scenarios = {k: {**(v or {}), "disclosure": disclosure} for k, v in scenarios.items()}
    groups = raw.get("runs") or [{"notebooks": "all", "scenarios": "all"}]
    available = sorted(p.stem for p in paths.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    runs: list[Run] = []
    problems: list[str] = []
    for scen, overrides in scenarios.items():
        try:
            check_notebook_parameters(
                list((overrides or {}).keys()), notebook=f"{path} scenario {scen}"
            )
            if (overrides or {}).get(
                "grid"
            ):  # a grid file is checked (names, secrets) before any run
                from analysis.sensitivity import load_grid

                load_grid(resolve(overrides["grid"]))
            Params.from_mapping(
                {k: v for k, v in (overrides or {}).items() if k in Params.names()},
                source=f"{path} scenario {scen}",
            )
        except AnalysisError as exc:
            problems.append(str(exc))
    for g in groups:
        nbs = available if g.get("notebooks", "all") == "all" else g["notebooks"]
        scs = list(scenarios) if g.get("scenarios", "all") == "all" else g["scenarios"]
        srcs = list(sources) if g.get("data_sources", "all") == "all" else g["data_sources"]
        for nb in nbs:
            if nb not in available:
                problems.append(
                    f"{path}: unknown notebook {nb!r}; available: {', '.join(available)}"
                )
                continue
            for sc in scs:
                if sc not in scenarios:
                    problems.append(f"{path}: a run names unknown scenario {sc!r}")
                    continue
                for src in srcs:
                    if src not in sources:
                        problems.append(f"{path}: a run names unknown data source {src!r}")
                        continue
                    parts = ([src] if len(sources) > 1 else []) + [sc, nb]
                    runs.append(
                        Run(
                            name="-".join(parts),
                            notebook=nb,
                            scenario=sc,
                            source=src,
                            data=str(sources[src]),
                            overrides=dict(scenarios[sc] or {}),
                        )
                    )
    if problems:
        raise AnalysisError("The batch was not started:\n  " + "\n  ".join(dict.fromkeys(problems)))
    # each run's release status is a field (NOT FOR RELEASE for data not marked synthetic
    # with disclosure control off or weakened): the HTML, manifest, index and sheet show it
    runs = [dataclasses.replace(r, release=_release(r)) for r in runs]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise AnalysisError(f"Batch file {path}: two runs have the same name.")
    return Batch(
        name=name,
        path=path,
        runs=runs,
        show_code=bool(raw.get("show_code", False)),
        reports=Path(reports) if reports else None,
    )


def _normalized(overrides: dict) -> dict:
    """A scenario's overrides with YAML's reading of ``disclosure: off`` (a boolean) undone."""
    out = dict(overrides)
    if out.get("disclosure") is False:
        out["disclosure"] = "off"
    return out


def _release(run: Run) -> str:
    """The run's release status (synthetic data / under disclosure control / NOT FOR RELEASE)."""
    from analysis.outputs.disclosure import release_status

    params = Params.from_mapping({k: v for k, v in run.overrides.items() if k in Params.names()})
    return release_status(params, _synthetic(run.data))


def _synthetic(data) -> bool:
    """Whether a data source says it is synthetic (the one answer of :func:`data.is_synthetic`)."""
    from analysis.data import is_synthetic

    return is_synthetic(resolve(data))


# ----------------------------------------------------------------------------- fingerprints
def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def code_fingerprint() -> dict:
    """sha256 over the analysis package's source files, and the git commit and state."""
    h = hashlib.sha256()
    pkg = Path(__file__).parent
    for p in sorted(pkg.rglob("*")):
        if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts:
            h.update(p.relative_to(pkg).as_posix().encode())
            h.update(p.read_bytes())
    for p in sorted(paths.CODELISTS.glob("*.csv")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    commit, dirty = None, None
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=paths.ROOT,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            or None
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=paths.ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return {"module_sha256": h.hexdigest(), "git_commit": commit, "git_dirty": dirty}


def data_fingerprint(data) -> dict:
    from analysis.engines import is_url, redact

    if is_url(data):
        return {"database": redact(str(data))}
    data = Path(data)
    if data.is_dir():
        files = sorted(
            p for p in data.iterdir() if p.is_file() and p.suffix in (".parquet", ".csv", ".json")
        )
    else:
        files = [data] if data.exists() else []
    return {p.name: sha256_file(p) for p in files}


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in (
        "analysis",
        "duckdb",
        "ipykernel",
        "matplotlib",
        "nbconvert",
        "numpy",
        "pandas",
        "papermill",
        "pyarrow",
        "scipy",
        "statsmodels",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    out["python"] = sys.version.split()[0]
    return out


def run_parameters(run: Run, out_dir: Path) -> dict:
    """What papermill injects: the scenario's overrides, the data and the output folder."""
    params = dict(run.overrides)
    params["data"] = str(resolve(run.data))
    for k in ("grid", "published"):  # run-level file parameters, resolved
        if params.get(k):
            params[k] = str(resolve(params[k]))
    params["output_dir"] = str(out_dir)
    return params


def run_key(run: Run, code: dict, data_fp: dict) -> str:
    h = hashlib.sha256()
    h.update(run.notebook_path.read_bytes())
    h.update(json.dumps(run.overrides, sort_keys=True, default=str).encode())
    h.update(json.dumps({"data": run.data, "files": data_fp}, sort_keys=True).encode())
    h.update(code["module_sha256"].encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- one run
def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def execute_run(
    run: Run, batch_out: str, key: str, code: dict, data_fp: dict, show_code: bool
) -> dict:
    """Execute one run in a worker process; returns its summary. Never raises."""
    import logging

    from analysis.outputs import inside

    final = inside(batch_out, Path(batch_out) / run.name)
    tmp = inside(batch_out, Path(batch_out) / f".tmp-{run.name}-{os.getpid()}")
    failed_dir = inside(batch_out, Path(batch_out) / f"{run.name}.failed")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started = _now()
    t0 = time.perf_counter()
    params = run_parameters(run, final)
    inject = dict(params)
    inject["output_dir"] = str(tmp)
    log_path = tmp / "run.log"
    # the kernel inherits this worker's stderr: send it (and its shutdown noise) to the log
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved_stderr = os.dup(2)
    os.dup2(log_fd, 2)
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    pm_log = logging.getLogger("papermill")
    pm_log.addHandler(handler)
    pm_log.setLevel(logging.INFO)
    status, error = "ok", None
    timings = {}
    try:
        import papermill as pm

        t = time.perf_counter()
        pm.execute_notebook(
            str(run.notebook_path),
            str(tmp / f"{run.notebook}.ipynb"),
            parameters=inject,
            kernel_name=KERNEL,
            cwd=str(paths.NOTEBOOKS),
            progress_bar=False,
            log_output=True,
            request_save_on_cell_execute=False,
        )
        timings["execute_s"] = round(time.perf_counter() - t, 3)
    except Exception as exc:  # papermill raises PapermillExecutionError for a cell error
        status = "failed"
        error = _describe_error(exc)
    finally:
        pm_log.removeHandler(handler)
        handler.close()
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(log_fd)
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
    manifest = {
        "batch": Path(batch_out).name,
        "run": run.name,
        "notebook": run.notebook,
        "scenario": run.scenario,
        "data_source": run.source,
        "data_is_synthetic": _synthetic(run.data),
        "release": run.release or _release(run),
        "status": status,
        "error": error,
        "parameters": params,
        "resolved_parameters": Params.from_mapping(
            {k: v for k, v in run.overrides.items() if k in Params.names()}
        ).to_dict(),
        "input_fingerprint": data_fp,
        "code_fingerprint": code,
        "lock_sha256": sha256_file(paths.LOCK_FILE) if paths.LOCK_FILE.exists() else None,
        "run_key": key,
        "packages": package_versions(),
        "started": started,
        "finished": _now(),
        "timings": {**timings, "total_s": round(time.perf_counter() - t0, 3)},
    }
    detail = None
    if status != "ok" and not manifest["data_is_synthetic"]:
        # the error and the executed notebook may quote patient values: keep only how to see them
        detail = error
        manifest["error"] = error = {
            "cell": error.get("cell") if error else None,
            "error": "withheld: the data are not marked synthetic (see the terminal)",
        }
        for f in tmp.iterdir():
            shutil.rmtree(f) if f.is_dir() else f.unlink()
        (tmp / "README.txt").write_text(_how_to_see(run))
    _write_json(tmp / MANIFEST, manifest)
    if status == "ok":
        if final.exists():
            shutil.rmtree(final)
        shutil.rmtree(failed_dir, ignore_errors=True)
        tmp.rename(final)
    else:
        shutil.rmtree(failed_dir, ignore_errors=True)
        tmp.rename(failed_dir)
    return {
        "run": run.name,
        "notebook": run.notebook,
        "scenario": run.scenario,
        "status": status,
        "seconds": round(time.perf_counter() - t0, 2),
        "error": error,
        "detail": detail,
    }


def _how_to_see(run: Run) -> str:
    from analysis.engines import redact

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

    nb = nbformat.read(nb_path, as_version=4)
    exporter = HTMLExporter(
        exclude_input=not show_code, exclude_input_prompt=True, exclude_output_prompt=True
    )
    body, _ = exporter.from_notebook_node(nb)
    if stamp:
        body = body.replace("<body", "<body data-release='not-for-release'", 1)
        i = body.find(">", body.find("<body")) + 1
        body = body[:i] + NOT_FOR_RELEASE + body[i:]
    html_path.write_text(body, encoding="utf-8")


def _rewrite_paths(nb_path: Path, tmp: Path, final: Path) -> None:
    """The executed notebook records the temporary folder; record the final one instead."""
    text = nb_path.read_text(encoding="utf-8")
    nb_path.write_text(text.replace(str(tmp), str(final)), encoding="utf-8")


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- the batch
def plan(batch: Batch, *, only: str | None = None, force: bool = False):
    """(run, key, code, data fingerprint, up_to_date) for every selected run."""
    code = code_fingerprint()
    fps: dict[str, dict] = {}
    out = []
    for run in batch.runs:
        if only and not fnmatch.fnmatch(run.name, only) and only not in run.name:
            continue
        data = resolve(run.data)
        if run.data not in fps:
            from analysis.engines import is_url

            if not is_url(data) and not Path(data).exists():
                raise AnalysisError(
                    f"Batch {batch.name}: data source {run.source!r} ({data}) "
                    "does not exist. Build the synthetic default with "
                    "`python -m analysis synth`."
                )
            fps[run.data] = data_fingerprint(data)
        key = run_key(run, code, fps[run.data])
        manifest = batch.out / run.name / MANIFEST
        fresh = False
        if not force and manifest.exists():
            try:
                m = json.loads(manifest.read_text())
                fresh = m.get("status") == "ok" and m.get("run_key") == key
            except json.JSONDecodeError:
                fresh = False
        out.append((run, key, code, fps[run.data], fresh))
    if only and not out:
        raise AnalysisError(f"--only {only!r} matches no run of batch {batch.name}.")
    return out


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
    from tqdm import tqdm

    real = [r for r in batch.runs if not _synthetic(r.data)]
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
    _refuse_other_data(batch)
    _refuse_foreign_files(batch)
    batch.out.mkdir(parents=True, exist_ok=True)
    for stale in _stale_temporaries(batch):  # left by an interrupted batch
        shutil.rmtree(stale, ignore_errors=True)
    planned = plan(batch, only=only, force=force)
    show = batch.show_code if show_code is None else show_code
    results = []
    todo = []
    for run, key, code, fp, fresh in planned:
        if fresh:
            m = json.loads((batch.out / run.name / MANIFEST).read_text())
            results.append(
                {
                    "run": run.name,
                    "notebook": run.notebook,
                    "scenario": run.scenario,
                    "status": "up to date",
                    "seconds": 0.0,
                    "error": None,
                    "last_seconds": m.get("timings", {}).get("total_s"),
                }
            )
        else:
            todo.append((run, key, code, fp))
    jobs = max(1, jobs or os.cpu_count() or 1)
    # a bar on a terminal; plain lines (one per finished run) in logs and pipes
    tty = sys.stderr.isatty()
    bar = tqdm(
        total=len(todo),
        desc=f"batch {batch.name}",
        unit="run",
        disable=not progress or not todo or not tty,
        file=sys.stderr,
    )
    if todo:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=min(jobs, len(todo)),
            mp_context=ctx,
            initializer=_worker_init,
            initargs=(os.getpid(),),
        ) as pool:
            futures = {
                pool.submit(execute_run, run, str(batch.out), key, code, fp, show): run
                for run, key, code, fp in todo
            }
            pending = set(futures)
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        run = futures[fut]
                        try:
                            results.append(fut.result())
                        except Exception as exc:  # a killed worker
                            results.append(
                                {
                                    "run": run.name,
                                    "notebook": run.notebook,
                                    "scenario": run.scenario,
                                    "status": "failed",
                                    "seconds": 0.0,
                                    "error": {"cell": None, "error": f"worker died: {exc}"},
                                }
                            )
                        bar.update(1)
                        if progress and not tty:
                            r = results[-1]
                            print(
                                f"[{len(results)}/{len(planned)}] {r['run']}: {r['status']} "
                                f"({r['seconds']:.1f} s)",
                                file=sys.stderr,
                                flush=True,
                            )
            except KeyboardInterrupt:
                for f in pending:
                    f.cancel()
                for proc in list((pool._processes or {}).values()):  # workers stop with the batch
                    proc.terminate()
                raise
    bar.close()
    order = {r.name: i for i, r in enumerate(batch.runs)}
    results.sort(key=lambda r: order.get(r["run"], 0))
    _report_failures_on_real_data(batch, results)
    write_index(batch)
    if real:
        from analysis.outputs.release import write_release_sheet

        write_release_sheet(batch)
    return results


def _report_failures_on_real_data(batch: Batch, results: list[dict]) -> None:
    """A run that failed on data not marked synthetic keeps no details in its files; they
    go to the terminal and a log outside the report folder: the run's error, and the data's
    validation problems when the data are what failed."""
    from analysis.credentials import write_problem_log
    from analysis.data import open_database

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


RUN_FILES = ("manifest.json", "run.log", "disclosure.json", "README.txt", ".disclosure.json.tmp")
BATCH_FILES = ("index.html", "release.md", ".index.html.tmp", ".release.md.tmp")


def _written_by_a_run(folder: Path) -> list[str]:
    """Files of a run folder that a run does not write (none for a folder it wrote)."""
    other = []
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder)
        if f.is_dir():
            if rel.as_posix() not in ("tables", "figures"):
                other.append(rel.as_posix())
            continue
        parts = rel.parts
        ok = (len(parts) == 1 and (f.name in RUN_FILES or f.suffix in (".ipynb", ".html"))) or (
            len(parts) == 2
            and (
                (parts[0] == "tables" and f.suffix == ".csv")
                or (parts[0] == "figures" and f.suffix in (".png", ".svg"))
                or f.name.startswith(".")
            )
        )
        if not ok:
            other.append(rel.as_posix())
    return other


def _refuse_foreign_files(batch: Batch) -> None:
    """A batch never deletes or overwrites a file it did not write: its folder may hold
    only run folders, their temporaries, the index and the release sheet, and a run
    folder only what a run writes; anything else stops the batch before it starts."""
    if not batch.out.exists():
        return
    names = {r.name for r in batch.runs}
    other = []
    for e in sorted(batch.out.iterdir()):
        if e.is_file() and e.name in BATCH_FILES:
            continue
        if e.is_dir() and (
            (e / MANIFEST).exists()
            or e.name.removesuffix(".failed") in names
            or _is_run_temporary(e, names)
        ):
            other += [f"{e.name}/{x}" for x in _written_by_a_run(e)]
            continue
        other.append(e.name)
    if other:
        shown = ", ".join(other[:8]) + (f" and {len(other) - 8} more" if len(other) > 8 else "")
        raise AnalysisError(
            f"Batch {batch.name}: {batch.out} holds files this tool did not write ({shown}); "
            "a batch never deletes or overwrites them. Move them, or give the batch another "
            "`name:` (or --reports DIR). Nothing was run."
        )


def _is_run_temporary(folder: Path, names: set[str]) -> bool:
    """``.tmp-<run>-<pid>`` of one of this batch's runs."""
    import re

    m = re.fullmatch(r"\.tmp-(.+)-(\d+)", folder.name)
    return bool(m) and m.group(1) in names


def _stale_temporaries(batch: Batch) -> list[Path]:
    names = {r.name for r in batch.runs}
    return [
        d
        for d in batch.out.glob(".tmp-*")
        if d.is_dir() and _is_run_temporary(d, names) and not _written_by_a_run(d)
    ]


def _refuse_other_data(batch: Batch) -> None:
    """A batch never writes into a folder made from other data (the runs of a copied
    batch file with only ``data:`` changed would sit under an index of the other data's)."""
    if not batch.out.exists():
        return
    ours = {str(resolve(r.data)) for r in batch.runs}
    for m in sorted(batch.out.glob("*/" + MANIFEST)):
        try:
            theirs = json.loads(m.read_text()).get("parameters", {}).get("data")
        except (json.JSONDecodeError, OSError):
            continue
        if theirs is not None and theirs not in ours:
            raise AnalysisError(
                f"Batch {batch.name}: {batch.out} holds runs made from other data (run "
                f"{m.parent.name}). A batch "
                "never writes into a folder made from other data: give this batch its own `name:` "
                "in "
                f"{Path(batch.path).name} (or --reports DIR). Nothing was run."
            )


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
def write_index(batch: Batch) -> Path:
    from analysis.report_index import render_index

    html = render_index(batch)
    target = batch.out / "index.html"
    tmp = target.with_name(".index.html.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, target)
    return target


def rerun_manifest(manifest_path: str | Path) -> int:
    """Repeat a run from its manifest alone and check that its tables come out
    byte-identical. Returns 0 when they do, 1 when any differs."""
    import tempfile

    import papermill as pm

    manifest_path = Path(manifest_path)
    if not manifest_path.exists():
        raise AnalysisError(f"Manifest {manifest_path} does not exist.")
    try:
        m = json.loads(manifest_path.read_text())
        notebook = m["notebook"]
        resolved = m["resolved_parameters"]
        data = m["parameters"]["data"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise AnalysisError(f"{manifest_path} is not a run manifest ({exc}).") from None
    run_dir = manifest_path.parent
    now_fp = data_fingerprint(Path(data))
    if now_fp != m.get("input_fingerprint"):
        raise AnalysisError(
            f"The input data at {data} are not the files the run used (their "
            "sha256 differ from the manifest's input_fingerprint)."
        )
    lock = sha256_file(paths.LOCK_FILE) if paths.LOCK_FILE.exists() else None
    if m.get("lock_sha256") and lock != m["lock_sha256"]:
        print(
            f"warning: requirements.lock differs from the run's ({m['lock_sha256'][:12]}...)",
            file=sys.stderr,
        )
    out = Path(tempfile.mkdtemp(prefix="rerun-"))
    params = {**resolved, "data": data, "output_dir": str(out)}
    for k in ("grid", "published"):
        if k in m["parameters"]:
            params[k] = m["parameters"][k]
    pm.execute_notebook(
        str(paths.NOTEBOOKS / f"{notebook}.ipynb"),
        str(out / f"{notebook}.ipynb"),
        parameters=params,
        kernel_name=KERNEL,
        cwd=str(paths.NOTEBOOKS),
        progress_bar=False,
    )
    differ = []
    tables = sorted((run_dir / "tables").glob("*.csv"))
    for t in tables:
        again = out / "tables" / t.name
        if not again.exists() or again.read_bytes() != t.read_bytes():
            differ.append(t.name)
    if differ:
        print(
            f"{len(differ)} of {len(tables)} table(s) differ: {', '.join(differ)} (new run in "
            f"{out})"
        )
        return 1
    print(f"Re-ran {notebook} from {manifest_path}: all {len(tables)} tables byte-identical.")
    shutil.rmtree(out, ignore_errors=True)
    return 0


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


if __name__ == "__main__":  # pragma: no cover
    traceback.print_exc()
