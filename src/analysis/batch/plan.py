"""Plan a batch: read the batch file, check every run before any starts, name the runs, decide
which are up to date, and refuse folders that hold other data or files the tool did not write."""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from analysis import paths
from analysis.batch.manifest import code_fingerprint, data_fingerprint
from analysis.credentials import refuse_passwords
from analysis.data import is_synthetic
from analysis.engines import is_url
from analysis.errors import AnalysisError
from analysis.files import real_folder
from analysis.inputs import read_yaml_mapping
from analysis.notebook import check_notebook_parameters, resolve
from analysis.outputs import safe_name
from analysis.outputs.disclosure import release_status
from analysis.params import Params
from analysis.sensitivity import load_grid

MANIFEST = "manifest.json"


KERNEL = "analysis"


def ensure_kernel() -> bool:
    """Register the notebooks' kernel (:data:`KERNEL`) in this environment when it is not
    yet (a conda environment made from environment.yml, an editable install); the kernel
    runs this environment's Python. Returns whether it was registered now."""
    import sys
    from importlib.resources import as_file, files

    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    try:
        manager.get_kernel_spec(KERNEL)
        return False
    except NoSuchKernel:
        pass
    with as_file(files("analysis") / "kernel") as folder:
        manager.install_kernel_spec(str(folder), KERNEL, prefix=sys.prefix)
    print(f"Registered the notebooks' kernel '{KERNEL}' in {sys.prefix}.", file=sys.stderr)
    return True


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

    path = Path(path or paths.BATCHES / "paper.yaml")
    allowed = {"name", "description", "data", "data_sources", "scenarios", "runs", "show_code"}
    raw = read_yaml_mapping(path, "Batch file", allowed, holds="name, data, scenarios, ...")

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


def run_parameters(run: Run, out_dir: Path) -> dict:
    """What papermill injects: the scenario's overrides, the data and the output folder."""
    params = dict(run.overrides)
    params["data"] = str(resolve(run.data))
    for k in ("grid", "published"):  # run-level file parameters, resolved
        if params.get(k):
            params[k] = str(resolve(params[k]))
    params["output_dir"] = str(out_dir)
    return params


def _normalized(overrides: dict) -> dict:
    """A scenario's overrides with YAML's reading of ``disclosure: off`` (a boolean) undone."""
    out = dict(overrides)
    if out.get("disclosure") is False:
        out["disclosure"] = "off"
    return out


def _release(run: Run) -> str:
    """The run's release status (synthetic data / under disclosure control / NOT FOR RELEASE)."""

    params = Params.from_mapping({k: v for k, v in run.overrides.items() if k in Params.names()})
    return release_status(params, _synthetic(run.data))


def _synthetic(data) -> bool:
    """Whether a data source says it is synthetic (the one answer of :func:`data.is_synthetic`)."""

    return is_synthetic(resolve(data))


def run_key(run: Run, code: dict, data_fp: dict) -> str:
    h = hashlib.sha256()
    h.update(run.notebook_path.read_bytes())
    h.update(json.dumps(run.overrides, sort_keys=True, default=str).encode())
    h.update(json.dumps({"data": run.data, "files": data_fp}, sort_keys=True).encode())
    h.update(code["module_sha256"].encode())
    return h.hexdigest()


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


RUN_FILES = (
    "manifest.json",
    "run.log",
    "disclosure.json",
    "results.csv",
    "README.txt",
)


BATCH_FILES = (
    "index.html",
    "release.md",
    "methods.md",
    "methods.html",
)


def _temporary_of(name: str, finals) -> bool:
    """Whether ``name`` is the temporary of one of ``finals`` left by an interrupted write
    (:func:`analysis.files.atomic_write` names them ``.<stem>.<random><suffix>``)."""
    for final in finals:
        stem, dot, suffix = final.rpartition(".")
        if name.startswith(f".{stem}.") and name.endswith(f"{dot}{suffix}"):
            return True
    return False


def _written_by_a_run(folder: Path) -> list[str]:
    """Files of a run folder that a run does not write (none for a folder it wrote)."""
    other = []
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder)
        if f.is_symlink():  # a link is never written by a run: a write could follow it
            other.append(rel.as_posix())
            continue
        if f.is_dir():
            if rel.as_posix() not in ("tables", "figures"):
                other.append(rel.as_posix())
            continue
        parts = rel.parts
        ok = (
            len(parts) == 1
            and (
                f.name in RUN_FILES
                or _temporary_of(f.name, RUN_FILES)
                or f.suffix in (".ipynb", ".html")
                or (f.name.startswith(".results.") and f.suffix == ".csv")
            )
        ) or (
            len(parts) == 2
            and (
                (parts[0] == "tables" and f.suffix in (".csv", ".docx", ".xlsx"))
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

    real_folder(batch.out, f"Batch {batch.name}: report folder")
    names = {r.name for r in batch.runs}
    other = []
    for e in sorted(batch.out.iterdir()):
        if e.is_symlink():  # never written by a batch; a write could follow it
            other.append(e.name)
            continue
        if e.is_file() and (e.name in BATCH_FILES or _temporary_of(e.name, BATCH_FILES)):
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
