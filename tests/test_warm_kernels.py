"""Warm kernels (issue 29): a batch worker hands one kernel, imports done, from run to run.
A run must never see another run's state, and a kernel that dies must cost only its run.

Each test compares with what a fresh kernel shows (papermill's own cold start), not with
values the reuse code chose; the control runs the same notebooks on a kernel that is not
reset, so every kind of state planted here is shown to carry over without the reset."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nbformat
import papermill as pm
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from analysis import paths
from analysis.batch.kernels import WarmKernel
from conftest import ROOT

pytestmark = pytest.mark.xdist_group("test_warm_kernels")

# run A leaves state of every kind a notebook can leave behind
PLANT = """
import os, sys, warnings
import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
from analysis.codelists import available_codelists, load_codelist

planted = "run A"
plt.figure()
matplotlib.rcParams["font.size"] = 31
pd.set_option("display.max_rows", 3)
warnings.simplefilter("error")
os.environ["PLANTED"] = "run A"
sys.path.append("/planted-by-run-a")
load_codelist(available_codelists()[0])
os.chdir("/")
"""

# run B reports what it finds (into output_dir/seen.json)
LOOK = """
import json, os, sys, warnings
import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import analysis.codelists

seen = {
    "a global of run A": "planted" in globals(),
    "open figures": plt.get_fignums(),
    "rcParams font.size": matplotlib.rcParams["font.size"],
    "pandas display.max_rows": pd.get_option("display.max_rows"),
    # the filters that apply to every warning (the libraries' imports add filters of their
    # own warning classes, which a warm kernel has from its imports on)
    "warning filters": [f[0] for f in warnings.filters if f[2] is Warning and f[1] is None
                        and f[3] is None],  # fmt: skip
    "environment PLANTED": os.environ.get("PLANTED"),
    "environment of the run": os.environ.get("ANALYSIS_WARM_TEST"),
    "sys.path": [p for p in sys.path if "planted" in p],
    "code-list cache": analysis.codelists._read.cache_info().currsize,
    "working directory": os.getcwd(),
    "input history": len(In),
}
with open(os.path.join(output_dir, "seen.json"), "w") as fh:
    json.dump(seen, fh)
"""


def _notebook(path, body: str):
    params = new_code_cell('output_dir = ""', metadata={"tags": ["parameters"]})
    nb = new_notebook(cells=[params, new_code_cell(body)])
    nb.metadata["kernelspec"] = {
        "name": "analysis",
        "display_name": "analysis",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def _seen(out) -> dict:
    return json.loads((out / "seen.json").read_text())


def _cold(nb, out, env=None):
    """The notebook in a fresh kernel, as papermill runs it alone."""
    out.mkdir()
    pm.execute_notebook(
        str(nb),
        str(out / "out.ipynb"),
        parameters={"output_dir": str(out)},
        kernel_name="analysis",
        cwd=str(paths.NOTEBOOKS),
        progress_bar=False,
    )
    return _seen(out)


class _NotReset(WarmKernel):
    """The control: a reused kernel that skips the reset between runs."""

    def prepare(self, env=None):
        if not self.alive():
            self.stop()
            self.start()


def _plant_then_look(kernel, tmp_path, plant, look, tag):
    a, b = tmp_path / f"{tag}-a", tmp_path / f"{tag}-b"
    a.mkdir(), b.mkdir()
    kernel.execute(plant, a / "out.ipynb", {"output_dir": str(a)})
    nb = kernel.execute(look, b / "out.ipynb", {"output_dir": str(b)})
    return _seen(b), [c.execution_count for c in nb.cells if c.cell_type == "code"]


def test_a_run_never_sees_the_state_another_run_left(tmp_path, monkeypatch):
    plant = _notebook(tmp_path / "plant.ipynb", PLANT)
    look = _notebook(tmp_path / "look.ipynb", LOOK)
    monkeypatch.delenv("PLANTED", raising=False)
    fresh = _cold(look, tmp_path / "cold")
    assert fresh["open figures"] == [] and fresh["code-list cache"] == 0  # a fresh kernel's
    assert fresh["working directory"] == str(paths.NOTEBOOKS)

    with WarmKernel() as kernel:
        seen, counts = _plant_then_look(kernel, tmp_path, plant, look, "warm")
        assert kernel.started == 1 and kernel.runs == 2  # one kernel served both runs
    assert seen == fresh
    assert counts == [1, 2, 3]  # cells numbered from 1 (papermill's injected one too), as fresh

    # the control: without the reset, every kind of state planted by run A reaches run B
    with _NotReset() as kernel:
        leaked, counts = _plant_then_look(kernel, tmp_path, plant, look, "control")
    # (but open figures: the inline backend closes them after each cell; the reset closes
    # them too, for a kernel on another backend)
    differ = {k for k in fresh if leaked[k] != fresh[k]}
    assert differ == set(fresh) - {"environment of the run", "open figures"}, set(fresh) - differ
    assert counts != [1, 2, 3]


def test_a_run_gets_its_own_environment_and_no_other_runs(tmp_path):
    look = _notebook(tmp_path / "look.ipynb", LOOK)
    with WarmKernel() as kernel:
        for i, value in enumerate(["first", None, "third"]):
            out = tmp_path / f"run{i}"
            out.mkdir()
            kernel.execute(look, out / "out.ipynb", {"output_dir": str(out)},
                           env={"ANALYSIS_WARM_TEST": value})  # fmt: skip
            assert _seen(out)["environment of the run"] == value


def test_a_kernel_that_dies_fails_its_run_only_and_is_replaced(tmp_path):
    die = _notebook(
        tmp_path / "die.ipynb", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"
    )
    look = _notebook(tmp_path / "look.ipynb", LOOK)
    fresh = _cold(look, tmp_path / "cold")
    with WarmKernel() as kernel:
        (tmp_path / "a").mkdir()
        with pytest.raises(Exception, match="(?i)dead|died"):
            kernel.execute(die, tmp_path / "a" / "out.ipynb", {"output_dir": str(tmp_path / "a")})
        b = tmp_path / "b"
        b.mkdir()
        kernel.execute(look, b / "out.ipynb", {"output_dir": str(b)})
        assert kernel.started == 2  # the dead kernel was replaced for the next run
    assert _seen(b) == fresh


@pytest.mark.slow
def test_a_notebook_run_after_others_on_one_kernel_writes_what_a_fresh_kernel_writes(
    tmp_path, small_db
):
    """The eligibility notebook under three scenarios in a row on one kernel, against each
    alone in a fresh kernel: every table and figure byte for byte."""
    nb = ROOT / "notebooks" / "03_eligibility.ipynb"
    scenarios = [{"elderly_age": 65}, {}, {"min_severity": 7, "benefit_distribution": "uniform"}]
    compared = 0
    with WarmKernel() as kernel:
        for i, scenario in enumerate(scenarios):
            # the same folder name: results.csv names its run after it
            warm, cold = tmp_path / "warm" / f"run{i}", tmp_path / "cold" / f"run{i}"
            warm.mkdir(parents=True), cold.mkdir(parents=True)
            params = {"data": str(small_db), **scenario}
            kernel.execute(nb, warm / "nb.ipynb", {**params, "output_dir": str(warm)})
            pm.execute_notebook(str(nb), str(cold / "nb.ipynb"),
                                parameters={**params, "output_dir": str(cold)},
                                kernel_name="analysis", cwd=str(paths.NOTEBOOKS),
                                progress_bar=False)  # fmt: skip
            files = sorted(p.relative_to(cold) for p in cold.rglob("*") if p.suffix in
                           (".csv", ".png", ".svg"))  # fmt: skip
            assert files
            for f in files:
                assert (warm / f).read_bytes() == (cold / f).read_bytes(), (i, f)
                compared += 1
    assert compared >= 12


@pytest.mark.parametrize(
    ("source", "cores", "jobs"),
    [("data/synthetic", 2, 2), ("spark://local[2]?path=/x", 2, 1),
     ("spark://local[2]?path=/x", 8, 4), ("spark://local[*]?path=/x", 8, 1),
     ("spark://local?path=/x", 2, 2), ("spark://host:7077?path=/x", 2, 2)],
)  # fmt: skip
def test_the_default_workers_leave_each_kernels_spark_its_cores(source, cores, jobs, monkeypatch):
    from types import SimpleNamespace

    from analysis.batch.execute import default_jobs

    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert default_jobs(SimpleNamespace(runs=[SimpleNamespace(data=source)])) == jobs


def test_the_batchs_processes_skip_the_iri_grammar_jsonschema_would_build():
    """nbformat -> jsonschema imports rfc3987_syntax where installed: about 1 s a process."""
    code = (
        "import sys, analysis.batch, nbformat, papermill, nbconvert; "
        "print(sys.modules.get('rfc3987_syntax', 'absent'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() in ("None", "absent")


# ----------------------------------------------------------------------------- parked kernels
def _parking(tmp_path, monkeypatch, seconds):
    from analysis.batch.kernels import KEEP_ENV, parking_folder

    monkeypatch.setenv(KEEP_ENV, str(seconds))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    return parking_folder()


def _gone(pid, within=10.0):
    import time

    from analysis.kernel_state import pid_alive

    deadline = time.monotonic() + within
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not pid_alive(pid)


def test_a_parked_kernel_serves_the_next_batch_from_a_fresh_state_then_ends(tmp_path, monkeypatch):
    """A worker that ends parks its kernel (reset); the next batch's worker claims it and
    its run sees nothing of the runs before; unclaimed, it ends after its waiting time."""
    plant = _notebook(tmp_path / "plant.ipynb", PLANT)
    look = _notebook(tmp_path / "look.ipynb", LOOK)
    monkeypatch.delenv("PLANTED", raising=False)
    fresh = _cold(look, tmp_path / "cold")
    folder = _parking(tmp_path, monkeypatch, 4)
    first = WarmKernel()
    (tmp_path / "a").mkdir()
    first.execute(plant, tmp_path / "a" / "out.ipynb", {"output_dir": str(tmp_path / "a")})
    pid = first._pid()
    first.retire()
    assert len(list(folder.glob("*.json"))) == 1 and not _gone(pid, within=0.5)

    second = WarmKernel()
    (tmp_path / "b").mkdir()
    nb = second.execute(look, tmp_path / "b" / "out.ipynb", {"output_dir": str(tmp_path / "b")},
                        env={"ANALYSIS_WARM_TEST": "second batch"})  # fmt: skip
    assert second.adopted == 1 and second.started == 0 and second._pid() == pid
    assert list(folder.glob("*.json")) == []  # claimed: no one else can take it
    assert _seen(tmp_path / "b") == {**fresh, "environment of the run": "second batch"}
    assert [c.execution_count for c in nb.cells if c.cell_type == "code"] == [1, 2, 3]
    second.retire()  # parked again: nobody claims it
    assert _gone(pid, within=10)
    assert list(folder.glob("*")) == []  # it took its ticket with it


def test_with_keeping_off_a_kernel_ends_with_its_worker(tmp_path, monkeypatch):
    folder = _parking(tmp_path, monkeypatch, "off")
    kernel = WarmKernel()
    kernel.start()
    pid = kernel._pid()
    kernel.retire()
    assert _gone(pid, within=5) and list(folder.glob("*")) == []


@pytest.mark.parametrize(
    ("how", "within"),
    [
        # mid-batch: the kernel started, imports done, then its worker killed
        ("k.start(); print(k._pid(), flush=True); os.kill(os.getpid(), signal.SIGKILL)", 5),
        # as it launches: killed before the kernel could hear from it (it watches its
        # worker from its own first line, not from a message)
        ("k.launch(); print(k._pid(), flush=True); os.kill(os.getpid(), signal.SIGKILL)", 15),
    ],
    ids=["mid-batch", "as-it-launches"],
)
def test_a_killed_worker_takes_its_kernel_with_it(how, within, tmp_path, monkeypatch):
    """A kernel that may be parked does not watch its parent as ipykernel does; it watches
    its owner itself: a killed worker leaves no kernel behind."""
    _parking(tmp_path, monkeypatch, 60)
    code = (
        f"import os, signal\nfrom analysis.batch.kernels import WarmKernel\nk = WarmKernel(); {how}"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ))  # fmt: skip
    pid = int(proc.stdout.readline())
    proc.wait()
    assert _gone(pid, within=within)


@pytest.mark.parametrize(
    "ticket",
    ["not json", '{"pid": 1, "connection": {}}', "ports out of range", "another host", "a link",
     "no kernel there"],
)  # fmt: skip
def test_a_strange_ticket_is_not_followed(ticket, tmp_path, monkeypatch):
    """A ticket is data: a file that is not one of ours is dropped, and a new kernel
    started; one well formed whose process does not answer as a kernel is let go of (its
    process, here this test's, is not signalled); nothing else in them is connected to."""
    from analysis.batch.kernels import compat_key

    folder = _parking(tmp_path, monkeypatch, 60)
    good = {"pid": os.getpid(), "connection": {
        "shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5,
        "ip": "127.0.0.1", "transport": "tcp", "signature_scheme": "hmac-sha256", "key": "k" * 32,
    }}  # fmt: skip
    path = folder / f"{compat_key('analysis', str(paths.NOTEBOOKS))}-x.json"
    if ticket == "not json":
        path.write_text("{")
    elif ticket == "ports out of range":
        good["connection"]["shell_port"] = 70000
        path.write_text(json.dumps(good))
    elif ticket == "another host":
        good["connection"]["ip"] = "203.0.113.9"
        path.write_text(json.dumps(good))
    elif ticket == "a link":
        (tmp_path / "elsewhere.json").write_text(json.dumps(good))
        path.symlink_to(tmp_path / "elsewhere.json")
    elif ticket == "no kernel there":  # well formed, its pid alive (this one), nobody listens
        path.write_text(json.dumps(good))
    else:
        path.write_text(ticket)
    with WarmKernel() as kernel:
        kernel.start()
        assert kernel.adopted == 0 and kernel.started == 1
    assert not path.exists() and not path.is_symlink()


def test_batch_stop_kernels_ends_the_kernels_left_waiting(tmp_path, monkeypatch, run_cli):
    folder = _parking(tmp_path, monkeypatch, 60)
    kernel = WarmKernel()
    kernel.start()
    pid = kernel._pid()
    kernel.retire()
    assert len(list(folder.glob("*.json"))) == 1
    done = run_cli("batch", "--stop-kernels")  # the environment above: same runtime folder
    assert done.returncode == 0 and "Ended 1 kernel(s)" in done.stdout, done.stderr
    # "Ended" is said once the kernel has ended, not once it was asked to (a request
    # still unsent when the channels closed was dropped: the kernel lived on, parked)
    assert _gone(pid, within=0) and list(folder.glob("*")) == []


def test_a_claimed_kernel_has_ended_when_stop_returns(tmp_path, monkeypatch):
    _parking(tmp_path, monkeypatch, 60)
    for _ in range(3):
        kernel = WarmKernel()
        kernel.start()
        pid = kernel._pid()
        kernel.retire()
        claimer = WarmKernel()
        claimer.start()
        assert claimer.adopted == 1 and claimer._pid() == pid
        claimer.stop()
        assert _gone(pid, within=0)
