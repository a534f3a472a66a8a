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

import json
import tempfile
from pathlib import Path

from analysis import paths
from analysis.batch.plan import KERNEL
from analysis.errors import AnalysisError

ENGINE = "analysis-warm"
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

    # ---- life ---------------------------------------------------------------------
    def alive(self) -> bool:
        from jupyter_core.utils import run_sync

        return self.km is not None and bool(run_sync(self.km.is_alive)())

    def launch(self) -> None:
        """Start the kernel and send it its imports (:data:`analysis.kernel_state.PRELOAD`,
        then ``remember``) without waiting: a worker launches it first thing, and the kernel
        boots and imports while the worker imports papermill and reads its first run.
        :meth:`start` (or the first run) waits for it."""
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        self.km = AsyncKernelManager(kernel_name=self.kernel_name)
        with open(self._log, "ab") as err:  # the kernel's own stderr (not its cells')
            run_sync(self.km.start_kernel)(cwd=self.cwd, stderr=err, stdout=err)
        self.kc = self.km.client()
        self.kc.start_channels()
        # queued until the kernel listens; out of history (no execution count)
        self._preload = self.kc.execute(PRELOAD_CODE, store_history=False)
        self.started += 1
        self.runs = 0

    def start(self) -> None:
        """A launched kernel with its imports done (launched now if it was not)."""
        from jupyter_core.utils import run_sync

        if self.km is None:
            self.launch()
        if self._preload is None:
            return
        msg_id, self._preload = self._preload, None
        try:
            reply = run_sync(self._reply)(msg_id, START_TIMEOUT)
            run_sync(self.kc.wait_for_ready)(timeout=START_TIMEOUT)  # iopub answers too
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
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
        """End the kernel now (no graceful shutdown: 0.1 s against 0.3-0.5 s)."""
        from jupyter_core.utils import run_sync

        self._preload = None
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
        self._run(
            "import analysis.kernel_state as _ks\n"
            f"_ks.reset(__import__('json').loads({json.dumps(json.dumps(env or {}))}))",
            "the reset between runs",
        )

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
        # process through atexit: either stops the kernel
        util.Finalize(_worker_kernel, _worker_kernel.close, exitpriority=100)
        atexit.register(_worker_kernel.close)
    return _worker_kernel
