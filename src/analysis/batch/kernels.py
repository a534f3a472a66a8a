"""Warm kernels: one kernel per batch worker, started once with the imports done and handed
run after run, each run from the state a fresh kernel has (:mod:`analysis.kernel_state`).

A cold kernel costs more than the computation it serves (start 0.7 s, imports about 1 s,
against about 1 s of a run's own cells). What was chosen, and why:

* **jupyter_client's** ``AsyncKernelManager`` starts the kernel and one ``AsyncKernelClient``
  talks to it for its whole life; papermill executes each notebook on them through a small
  engine (:data:`ENGINE`, papermill's ``NBClientEngine`` given the client as well as
  the manager: nbclient then neither starts a client per run nor shuts the kernel down).
  Parameters, the executed notebook, its per-cell log and errors stay papermill's.
* Not a pool of pre-started fresh kernels (jupyter_client's ``MultiKernelManager``,
  kernel-gateway's pool): with two workers both cores are busy already; what a fresh kernel
  costs is its imports, which only reuse saves.
* Not one kernel for the whole batch: a worker is a process of its own (the batch's
  ``--jobs``), and a kernel is the process a run's code runs in; two kernels run side by side.

Isolation: before every run the worker executes :func:`analysis.kernel_state.reset` in the
kernel (out of history: the run's cells are numbered from 1), with the run's environment
(the disclosure audit's turn). A kernel found dead before a run is replaced; one that dies
during a run fails that run only (nbclient's ``DeadKernelError``) and the next run gets a
new kernel. The kernel's own stderr goes to a file whose new lines are appended to each
run's ``run.log``; what the cells print reaches it through papermill's log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from analysis import paths
from analysis.batch.manifest import code_fingerprint
from analysis.batch.plan import KERNEL
from analysis.errors import AnalysisError
from analysis.files import atomic_write_text
from analysis.kernel_state import pid_alive

ENGINE = "analysis-warm"
ADOPT_TIMEOUT = 5  # seconds for a parked kernel to answer its new owner
SHUTDOWN_WAIT = 5  # seconds for a claimed kernel to end when asked
KEEP_ENV = "ANALYSIS_KEEP_KERNELS"
KEEP_DEFAULT = 300.0
PRELOAD_CODE = "import analysis.kernel_state as _ks\n_ks.preload()\n_ks.remember()\ndel _ks"
START_TIMEOUT = 60  # seconds for a kernel to start and answer


def _register_engine() -> None:
    """Register :data:`ENGINE` with papermill (once): its nbclient engine on a kernel it does
    not own, given as ``warm=`` a :class:`WarmKernel` whose manager and client are used and
    neither stopped. Defined on first use: the batch's own process never imports papermill."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args

    if ENGINE in papermill_engines._engines:
        return

    class WarmEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man,
            kernel_name,
            log_output=False,
            stdout_file=None,
            stderr_file=None,
            start_timeout=60,
            execution_timeout=None,
            **kwargs,
        ):
            warm = kwargs.pop("warm")
            kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
            final = merge_kwargs(
                kwargs,
                timeout=execution_timeout,
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log=logger,
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
            )
            client = PapermillNotebookClient(nb_man, km=warm.km, **final)
            client.kc = warm.kc  # nbclient starts no client of its own and stops none
            return client.execute()

    papermill_engines.register(ENGINE, WarmEngine)


class WarmKernel:
    """One kernel of :data:`analysis.batch.plan.KERNEL` in ``cwd``, imports done.

    ``execute(...)`` runs a notebook with papermill on it after a reset; ``stop()`` ends it
    (immediately: nothing of a run is left to save). Starts on first use."""

    def __init__(self, cwd: Path | str = paths.NOTEBOOKS, kernel_name: str = KERNEL):
        self.cwd = str(cwd)
        self.kernel_name = kernel_name
        self.km = None  # jupyter_client's AsyncKernelManager
        self.kc = None
        self.runs = 0  # runs on the current kernel
        self.started = 0  # kernels started (a dead one is replaced)
        self._log_dir = Path(tempfile.mkdtemp(prefix="analysis-kernel-"))
        self._log = self._log_dir / "kernel.log"
        self._log_read = 0
        self._preload: str | None = None  # the imports' request, until its reply is read
        self._wait = START_TIMEOUT
        self.adopted = 0  # parked kernels claimed

    # ---- life ---------------------------------------------------------------------
    def alive(self) -> bool:
        from jupyter_core.utils import run_sync

        return self.km is not None and bool(run_sync(self.km.is_alive)())

    def launch(self) -> None:
        """Start the kernel and send it its imports (:data:`analysis.kernel_state.PRELOAD`,
        then ``remember``) without waiting: a worker launches it first thing, and the kernel
        boots and imports while the worker reads its first run. A kernel parked by an
        earlier batch of the same code is claimed instead (:meth:`retire`). :meth:`start`
        (or the first run) waits for it."""
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        if self._adopt():
            return
        keep = keep_seconds() > 0  # a kernel that may outlive its worker watches it itself
        self.km = AsyncKernelManager(kernel_name=self.kernel_name)
        # a kernel that may outlive its worker watches it from its first line on (not from
        # a message, which a worker killed at once may never send)
        watch = [f"--IPKernelApp.exec_lines={_watch_code().strip().replace(chr(10), '; ')}"]
        with open(self._log, "ab") as err:  # the kernel's own stderr (not its cells')
            run_sync(self.km.start_kernel)(
                cwd=self.cwd, stderr=err, stdout=err, independent=keep,
                extra_arguments=watch if keep else [],
            )  # fmt: skip
        self.kc = self.km.client()
        self.kc.start_channels()
        # queued until the kernel listens; out of history (no execution count)
        self._preload = self.kc.execute(PRELOAD_CODE, store_history=False)
        self._wait = START_TIMEOUT
        self.started += 1
        self.runs = 0

    def _adopt(self, any_key: bool = False) -> bool:
        """Claim a kernel an earlier batch's worker parked (same code, Python and project):
        its ticket is renamed (one claimer wins), read as data and checked; the kernel then
        watches this process. False when there is none (or keeping is off)."""
        from jupyter_client.asynchronous import AsyncKernelClient

        if keep_seconds() <= 0:
            return False
        folder = parking_folder()
        if folder is None:
            return False
        for ticket in sorted(folder.glob("*.json" if any_key else f"{self._key()}-*.json")):
            claimed = ticket.with_name(f"{ticket.name}.claimed-{os.getpid()}")
            try:
                os.rename(ticket, claimed)
            except OSError:  # another worker was first
                continue
            try:
                info = read_ticket(claimed)
            finally:
                claimed.unlink(missing_ok=True)
            if info is None or not pid_alive(info["pid"]):
                continue
            kc = AsyncKernelClient()
            kc.load_connection_info(info["connection"])
            kc.start_channels()
            self.km, self.kc = _Adopted(kc, info["pid"], info["connection"]), kc
            self._preload = kc.execute(_watch_code(), store_history=False)
            self._wait = ADOPT_TIMEOUT
            self.adopted += 1
            self.runs = 0
            return True
        return False

    def _key(self) -> str:
        return compat_key(self.kernel_name, self.cwd)

    def start(self) -> None:
        """A launched kernel with its imports done (launched now if it was not)."""
        from jupyter_core.utils import run_sync

        if self.km is None:
            self.launch()
        if self._preload is None:
            return
        msg_id, self._preload = self._preload, None
        try:
            reply = run_sync(self._reply)(msg_id, self._wait)
            run_sync(self.kc.wait_for_ready)(timeout=self._wait)  # iopub answers too
        except (RuntimeError, TimeoutError) as exc:
            adopted = isinstance(self.km, _Adopted)
            if adopted:  # a parked one that did not answer: let go of, not asked to end
                self.km = None  # nor signalled (its process may be no kernel)
                self.adopted -= 1
            self.stop()
            if adopted:  # and a new one instead
                return self.start()
            raise AnalysisError(f"The kernel {self.kernel_name!r} did not start: {exc}") from None
        if reply["content"].get("status") != "ok":
            self.stop()
            raise AnalysisError(
                f"The kernel {self.kernel_name!r} failed in the imports: "
                f"{reply['content'].get('ename')}: {reply['content'].get('evalue')}"
            )

    async def _reply(self, msg_id: str, timeout: float) -> dict:
        """The shell reply to ``msg_id`` (others are dropped)."""
        import asyncio
        import time

        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply in {timeout} s")
            try:
                msg = await self.kc.get_shell_msg(timeout=left)
            except Exception as exc:  # queue.Empty from the client
                if not await self.km.is_alive():
                    raise RuntimeError("the kernel died while starting") from None
                raise TimeoutError(f"no reply in {timeout} s") from exc
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return msg
            await asyncio.sleep(0)

    def stop(self) -> None:
        """End the kernel now: this process's own is killed (0.1 s against 0.3-0.5 s for a
        graceful shutdown); a claimed one is asked to end and waited for (see
        :meth:`_Adopted.shutdown_kernel`)."""
        from jupyter_core.utils import run_sync

        self._preload = None
        if isinstance(self.km, _Adopted):  # not this process's child: asked to end
            run_sync(self.km.shutdown_kernel)()
            self.km = None
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None
        if self.km is not None:
            try:
                if run_sync(self.km.is_alive)():
                    run_sync(self.km.shutdown_kernel)(now=True)
            finally:
                run_sync(self.km.cleanup_resources)()
                self.km = None

    def close(self) -> None:
        """Stop the kernel and remove its log folder."""
        self.stop()
        import shutil

        shutil.rmtree(self._log_dir, ignore_errors=True)

    def retire(self) -> None:
        """At the end of its worker: park the kernel for the next batch (reset first, so
        that nothing of the last run stays; it waits :func:`keep_seconds`, then ends), or
        stop it when keeping is off or anything goes wrong."""
        import uuid

        seconds, folder = keep_seconds(), parking_folder()
        if seconds <= 0 or folder is None or self.km is None or not self.alive():
            return self.close()
        try:
            self.start()
            self._run(_reset_code({}, None), "the reset before parking")
            ticket = folder / f"{self._key()}-{uuid.uuid4().hex}.json"
            info = {"pid": self._pid(), "connection": _connection(self.km)}
            atomic_write_text(ticket, json.dumps(info), within=folder)
            os.chmod(ticket, 0o600)
            self._run(
                f"import analysis.kernel_state as _ks\n_ks.park({seconds!r}, {str(ticket)!r})",
                "parking",
            )
        except Exception:
            return self.close()
        self.kc.stop_channels()  # the kernel stays; this process lets go of it
        self.kc = self.km = None
        shutil.rmtree(self._log_dir, ignore_errors=True)

    def _pid(self) -> int:
        if isinstance(self.km, _Adopted):
            return self.km.pid
        return int(self.km.provisioner.pid)

    def __enter__(self) -> WarmKernel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- runs ---------------------------------------------------------------------
    def prepare(self, env: dict[str, str] | None = None) -> None:
        """A kernel ready for a run: replaced when dead (or not started), then reset with
        ``env`` added to its environment."""
        if not self.alive():
            self.stop()
        self.start()
        self._run(_reset_code(env or {}, dict(os.environ)), "the reset between runs")

    def execute(self, input_path, output_path, parameters: dict, env=None, **papermill_kwargs):
        """Execute a notebook with papermill in this kernel, after :meth:`prepare`; returns
        the executed notebook (papermill's errors are raised as papermill raises them)."""
        import papermill as pm

        _register_engine()
        self.prepare(env)
        self.runs += 1
        try:
            return pm.execute_notebook(
                str(input_path),
                str(output_path),
                parameters=parameters,
                engine_name=ENGINE,
                kernel_name=self.kernel_name,
                progress_bar=False,
                warm=self,
                **papermill_kwargs,
            )
        finally:
            if not self.alive():  # died during the run: the next run starts a new one
                self.stop()

    def call(self, module: str, function: str, argument: str, env=None) -> None:
        """``module.function(argument)`` (a string) in the kernel, after :meth:`prepare`;
        raises AnalysisError naming only the exception's type when it fails (its message
        may quote data)."""
        self.prepare(env)
        self._run(
            f"import {module} as _m\n_m.{function}({json.dumps(argument)})\ndel _m",
            f"{module}.{function}",
            quote=False,
        )

    def new_log(self) -> str:
        """What the kernel process itself wrote to stderr since the last call."""
        try:
            with open(self._log, "rb") as fh:
                fh.seek(self._log_read)
                data = fh.read()
        except OSError:
            return ""
        self._log_read += len(data)
        return data.decode("utf-8", "replace")

    def _run(self, code: str, what: str, quote: bool = True) -> None:
        """Execute ``code`` out of history (no execution count); raise when it fails
        (``quote``: with the error's message, else its type alone)."""
        from jupyter_core.utils import run_sync

        reply = run_sync(self.kc.execute_interactive)(
            code, store_history=False, timeout=START_TIMEOUT, output_hook=lambda msg: None
        )
        content = reply["content"]
        if content.get("status") != "ok":
            if quote:  # the kernel's own steps: it is not fit for a run
                self.stop()
            detail = f": {content.get('evalue')}" if quote else ""
            raise AnalysisError(
                f"The kernel {self.kernel_name!r} failed in {what}: {content.get('ename')}{detail}"
            )


# ----------------------------------------------------------------------------- a worker's
_worker_kernel: WarmKernel | None = None


def worker_kernel() -> WarmKernel:
    """This process's warm kernel (a batch worker keeps one for all its runs); stopped
    when the process ends."""
    global _worker_kernel
    if _worker_kernel is None:
        import atexit
        from multiprocessing import util

        _worker_kernel = WarmKernel()
        # a pool's worker ends through multiprocessing's exit (its finalizers), a plain
        # process through atexit: either parks the kernel or stops it
        util.Finalize(_worker_kernel, _worker_kernel.retire, exitpriority=100)
        atexit.register(_worker_kernel.retire)
    return _worker_kernel


# ----------------------------------------------------------------------------- parking
def keep_seconds() -> float:
    """How long a worker's kernel waits, parked, for the next batch: ``ANALYSIS_KEEP_KERNELS``
    in seconds (default 300); 0 or ``off``: it ends with its worker (an unreadable value
    counts as off)."""
    value = os.environ.get(KEEP_ENV, "").strip().lower()
    if not value:
        return KEEP_DEFAULT
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0


def stop_parked() -> int:
    """End this process's own warm kernel and every kernel parked in this user's runtime
    folder (each claimed, then asked to shut down); the number of parked ones ended."""
    global _worker_kernel
    if _worker_kernel is not None:
        _worker_kernel.close()
        _worker_kernel = None
    ended = 0
    while True:
        kernel = WarmKernel()
        try:
            if not kernel._adopt(any_key=True):
                return ended
            ended += 1
        finally:
            kernel.close()


def parking_folder() -> Path | None:
    """Where parked kernels' tickets lie: ``analysis-kernels`` in Jupyter's runtime folder
    (this user's, mode 0700); None when it is not a real folder of this user's."""
    import stat

    from jupyter_core.paths import jupyter_runtime_dir

    folder = Path(jupyter_runtime_dir()) / "analysis-kernels"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = folder.lstat()
    except OSError:
        return None
    uid = getattr(os, "getuid", None)  # POSIX only: elsewhere nothing is parked
    if uid is None or not stat.S_ISDIR(st.st_mode) or st.st_uid != uid() or st.st_mode & 0o077:
        return None
    return folder


def compat_key(kernel_name: str, cwd: str) -> str:
    """What a parked kernel must share with the batch that claims it: the Python, the
    kernel's command, the package's code, the import path and the working folder."""
    from jupyter_client.kernelspec import KernelSpecManager

    parts = {
        "python": sys.executable,
        "kernel": KernelSpecManager().get_kernel_spec(kernel_name).argv,
        "code": code_fingerprint()["module_sha256"],
        "pythonpath": os.environ.get("PYTHONPATH", ""),
        "cwd": cwd,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


_PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
_CONNECTION = (*_PORTS, "ip", "transport", "signature_scheme", "key")


def read_ticket(path: Path) -> dict | None:
    """A parked kernel's ticket, checked (a process id, five ports, a loopback address
    over TCP, an HMAC key); None for anything else."""
    try:
        if path.is_symlink() or path.stat().st_size > 4096:
            return None
        raw = json.loads(path.read_text(encoding="utf-8"))
        conn, pid = raw["connection"], raw["pid"]
        ok = (
            isinstance(pid, int)
            and pid > 1
            and all(isinstance(conn[p], int) and 0 < conn[p] < 65536 for p in _PORTS)
            and conn["ip"] in ("127.0.0.1", "localhost")
            and conn["transport"] == "tcp"
            and conn["signature_scheme"] == "hmac-sha256"
            and isinstance(conn["key"], str)
            and 16 <= len(conn["key"]) <= 256
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not ok:
        return None
    return {"pid": pid, "connection": {k: conn[k] for k in _CONNECTION}}


def _connection(km) -> dict:
    info = dict(km.get_connection_info(session=False))
    if isinstance(info.get("key"), bytes):
        info["key"] = info["key"].decode()
    return {k: info[k] for k in _CONNECTION}


def _watch_code() -> str:
    return f"import analysis.kernel_state as _ks\n_ks.watch({os.getpid()})\ndel _ks\n"


def _reset_code(env: dict, environ: dict | None) -> str:
    args = json.dumps(json.dumps({"env": env, "environ": environ}))
    return (
        "import analysis.kernel_state as _ks\n"
        f"_ks.reset(**__import__('json').loads({args}))"  # the reset empties the namespace
    )


class _Adopted:
    """The manager of a kernel another worker started and parked: what nbclient asks of
    a manager, answered from its process id (alive?) and over its channels (shutdown)."""

    has_kernel = True
    ipykernel = True

    def __init__(self, kc, pid: int, connection: dict):
        self.kc, self.pid, self.connection = kc, pid, connection

    async def is_alive(self) -> bool:
        return pid_alive(self.pid)

    async def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
        """Ask the kernel to end and wait until it has: its reply on the control channel,
        then its process gone. The request must be answered before the channels close
        (they drop what is unsent). A kernel that replied (so it holds this ticket's key)
        but still runs after :data:`SHUTDOWN_WAIT` seconds is killed."""
        import asyncio
        import signal
        import time

        deadline = time.monotonic() + SHUTDOWN_WAIT
        with contextlib.suppress(Exception):
            msg_id = self.kc.shutdown()
            replied = False
            while not replied and (left := deadline - time.monotonic()) > 0:
                msg = await self.kc.control_channel.get_msg(timeout=left)
                replied = msg.get("parent_header", {}).get("msg_id") == msg_id
            while pid_alive(self.pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if replied and pid_alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)

    async def cleanup_resources(self, restart: bool = False) -> None:
        return None

    async def interrupt_kernel(self) -> None:
        raise RuntimeError("a claimed kernel is not interrupted")

    def client(self):
        return self.kc

    def get_connection_info(self, session: bool = False) -> dict:
        return dict(self.connection)
