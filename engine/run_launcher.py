"""The instance's run launcher: run workers forked from a warm server when a Dagster daemon launches.

Dagster's DefaultRunLauncher asks the code server to start each run, and the code server spawns a
fresh interpreter that imports the whole stack (Dagster, pandas, pyarrow, DuckDB, OR-Tools,
great-expectations: 4-5 s on this product's machines) before the run's first step. Runs that the
daemon launches (UI launches, backfills, schedules, sensors and CLI runs while a daemon serves the
queue) start here instead in a process forked from a forkserver that the daemon starts once and
that imported those libraries and the code location, then warmed up what a run's first steps pay
(PRELOAD, engine/worker_preload.py). The daemon starts it at its first look at the run queue
(engine/run_queue.py); a launch while it still imports waits for it. When the product's source
changes after that import (code_stamp), runs go through the code server again, which reloads, until
the daemon restarts.

Everything else stays Dagster's: the run executes through `core_execute_run` exactly as in a code
server's worker (the job's executor, the event log, interrupts). The daemon watches each worker it
forked, and a worker that dies before its run ended fails the run with the same explanation as a
code server would. Terminating a run (UI, `batch-admin`) interrupts its worker (SIGINT, what the
code server sends), located by the run's `batch_admin/run_worker` tag. Launches from any other
process (the CLI without a daemon), and those of a daemon whose server failed to start, go through
the code server as before.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import socket
import threading
from multiprocessing.process import BaseProcess
from pathlib import Path

import dagster as dg

from batch.names import WORKER_TAG
from engine.internals import (
    CheckRunHealthResult,
    ConfigurableClassData,
    EngineEventData,
    InstanceRef,
    LaunchRunContext,
    WorkerStatus,
    capture_interrupts,
    core_execute_run,
    get_run_crash_explanation,
    recon_job_from_origin,
)

# Imported once by the forkserver: the libraries, then engine.worker_preload (the code location
# and a warm-up of what a run's first steps would each pay). Missing ones are skipped by multiprocessing.
PRELOAD = ("dagster", "numpy", "pandas", "pyarrow.parquet", "duckdb", "sqlalchemy", "scipy.optimize", "numba",
           "ortools.sat.python.cp_model", "matplotlib.backends.backend_agg", "xlsxwriter", "jinja2",
           "great_expectations", "great_expectations.expectations", "dagster_celery", "engine.worker_preload")
# The product's source: when a file changes after the forkserver imported it, runs go through the
# code server (which reloads) until the daemon restarts.
PRODUCT_ROOT = Path(__file__).resolve().parent.parent
PRODUCT_PACKAGES = ("assets", "batch", "checks", "engine", "pipelines", "resources", "solvers")
DAEMON_THREAD_PREFIX = "dagster-daemon-"


def in_daemon() -> bool:
    """True in a Dagster daemon process (`dagster-daemon run`, or the daemon of `dagster dev`)."""
    return any(thread.name.startswith(DAEMON_THREAD_PREFIX) for thread in threading.enumerate())


def worker_alive(pid: int) -> bool:
    """True when `pid` is a live process forked from a forkserver (a run worker of this launcher), as far
    as this host can tell: exited, zombie or another program (a reused pid) count as gone."""
    stat, cmdline = Path(f"/proc/{pid}/stat"), Path(f"/proc/{pid}/cmdline")
    try:
        if not stat.exists():  # no /proc (not Linux): only whether the pid exists
            os.kill(pid, 0)
            return True
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X") and b"multiprocessing.forkserver" in cmdline.read_bytes()
    except (OSError, IndexError):
        return False


def forked_worker(run: dg.DagsterRun) -> tuple[str, int] | None:
    """(host, pid) of the run's worker when this launcher forked it (its WORKER_TAG), else None."""
    tag = run.tags.get(WORKER_TAG)
    if tag is None:
        return None
    worker = json.loads(tag)
    return str(worker["host"]), int(worker["pid"])


def code_stamp(root: Path = PRODUCT_ROOT) -> tuple[int, int]:
    """(newest modification time, number) of the product's source files."""
    files = [path for package in PRODUCT_PACKAGES for path in (root / package).rglob("*.py")]
    return max((path.stat().st_mtime_ns for path in files), default=0), len(files)


def _forkserver() -> multiprocessing.context.ForkServerContext:
    """The forkserver context of this process, its server preloading PRELOAD (started on first use)."""
    # The server's environment is this one's: great-expectations must not report usage from a batch job.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    return context


def _probe() -> None:
    """A process that does nothing: forked once the forkserver has imported PRELOAD."""


class WarmServer:
    """This process's forkserver, started in the background; ready once it has forked a process
    (it forks only after its imports); settled once it is ready or has failed."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.settled = threading.Event()
        self.stamp: tuple[int, int] | None = None  # the product's source as the server imported it
        self._lock = threading.Lock()
        self._started = False

    def start(self) -> None:
        with self._lock:
            if self._started or "forkserver" not in multiprocessing.get_all_start_methods():
                return  # started already, or a platform without fork: runs keep the code server
            self._started = True
        threading.Thread(target=self._warm, name="warm-run-workers", daemon=True).start()

    @property
    def started(self) -> bool:
        return self._started

    def _warm(self) -> None:
        try:
            self.stamp = code_stamp()  # before the import: a change during it counts as a change
            probe = _forkserver().Process(target=_probe, name="warm-run-workers-probe")
            probe.start()
            probe.join()
            if probe.exitcode == 0:
                self.ready.set()
        except (EOFError, OSError) as exc:
            # The forkserver died before it forked (an interrupt during its imports, as when `dagster dev`
            # stops while it starts): runs then start in the code server, as without a warm server.
            logging.getLogger(__name__).info("The warm run workers' server did not start: %r", exc)
        finally:
            self.settled.set()


WARM_SERVER = WarmServer()
# A launch while the server still imports waits for it this long at most: a code server's fresh run
# worker would import the same libraries from the start (the daemon's run queue starts the server at
# its first look, engine/run_queue.py, so a launch rarely finds it importing).
WARM_SERVER_WAIT_S = 60.0
RUN_POOL_RECYCLE_S = 3600  # a run worker's pooled PostgreSQL connections are replaced after an hour


def pool_for_run(instance: dg.DagsterInstance) -> None:
    """PostgreSQL: each of the instance's storages keeps one connection (a second while one is in use)
    until the instance is disposed, where dagster-postgres connects anew for every statement (~2.7 ms
    each, ~130 events a run); no statement timeout, as in any run worker. SQLite storages ignore it."""
    instance.optimize_for_webserver(statement_timeout=0, pool_recycle=RUN_POOL_RECYCLE_S, max_overflow=1)


def run_worker(instance_ref: str, run_id: str) -> None:
    """The run worker: execute the run as a code server's run worker does (interrupts become a
    cancelled run)."""
    with capture_interrupts(), dg.DagsterInstance.from_ref(dg.deserialize_value(instance_ref, InstanceRef)) as instance:
        pool_for_run(instance)
        run = instance.get_run_by_id(run_id)
        if run is None or run.job_code_origin is None:
            raise RuntimeError(f"run {run_id} is not in the instance's run storage, or has no code origin")
        recon_job = recon_job_from_origin(run.job_code_origin)
        pid = os.getpid()
        instance.report_engine_event(f"Started process for run (pid: {pid}), forked from the daemon's warm server.",
                                     run, EngineEventData.in_process(pid))
        for _event in core_execute_run(recon_job, run, instance, inject_env_vars=False):
            pass


class WarmRunLauncher(dg.DefaultRunLauncher):
    """DefaultRunLauncher, except that a daemon forks run workers from its warm server."""

    def __init__(self, inst_data: ConfigurableClassData | None = None):
        super().__init__(inst_data=inst_data)
        if in_daemon():
            WARM_SERVER.start()

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        if in_daemon():
            WARM_SERVER.start()
        if WARM_SERVER.started:
            WARM_SERVER.settled.wait(WARM_SERVER_WAIT_S)
        if not WARM_SERVER.ready.is_set() or run.job_code_origin is None:
            # Not a daemon, or its server failed or still imports after the wait: the code server.
            super().launch_run(context)
            return
        if code_stamp() != WARM_SERVER.stamp:
            self._instance.report_engine_event(
                "The product's code changed after the daemon's warm server imported it: this run starts "
                "through the code server (restart the daemon to start runs warm again).", run, cls=self.__class__)
            super().launch_run(context)
            return
        process = _forkserver().Process(target=run_worker, name=f"run-worker-{run.run_id[:8]}",
                                        args=(dg.serialize_value(self._instance.get_ref()), run.run_id))
        process.start()
        self._instance.add_run_tags(run.run_id, {WORKER_TAG: json.dumps({"host": socket.gethostname(),
                                                                         "pid": process.pid})})
        threading.Thread(target=self._watch, args=(run.run_id, process), name=f"watch-{run.run_id[:8]}",
                         daemon=True).start()

    def _watch(self, run_id: str, process: BaseProcess) -> None:
        """Fail the run when its worker exits before the run ended (killed, out of memory); cancel it
        when it was being terminated."""
        process.join()
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return
        message = get_run_crash_explanation(prefix=f"Run execution process for {run_id}",
                                            exit_code=process.exitcode if process.exitcode is not None else -1)
        self._instance.report_engine_event(message, run, cls=self.__class__)
        if run.status == dg.DagsterRunStatus.CANCELING:  # interrupted before it could say so itself
            self._instance.report_run_canceled(run)
        else:
            self._instance.report_run_failed(run)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        """For Dagster's run monitoring: a worker this launcher forked is checked by its pid (it covers
        a daemon restarted while its runs went on, whose watchers are gone); a worker a code server
        started is that code server's to report, and one on another host cannot be seen from here."""
        worker = forked_worker(run)
        if worker is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "started by a code server, which reports it")
        host, pid = worker
        if host != socket.gethostname():
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker on {host}, not checked here")
        if worker_alive(pid):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} is gone", run_worker_id=str(pid))

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        worker = forked_worker(run)
        if worker is None:
            return super().terminate(run_id)
        host, pid = worker
        if host != socket.gethostname():
            self._instance.report_engine_event(
                f"Cannot terminate run {run_id}: its run worker runs on {host}, not here.", run, cls=self.__class__)
            return False
        self._instance.report_run_canceling(run)
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return False
        return True
