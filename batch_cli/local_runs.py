"""A command's own run, when no running ui takes it: no code server, no cold run worker.

The CLI loads the workspace's code location in its own process (the import it needs anyway to plan the
run) and creates the run there with the origin a code server of workspace.yaml would give it (the same
location name, repository and job origins: the UI re-executes it and backfills see it as any other run).
Without a daemon the run executes in a child forked from this process, which has imported the stack
already: it starts in milliseconds instead of a spawned interpreter importing everything again (a code
server, then its run worker: 7-12 s of a CLI run before). The child is the run worker: it executes the run
as the warm launcher's workers do (engine/run_launcher.py `run_worker`), its pid and start time are in
the run's `batch_admin/run_worker` tag (run monitoring checks it, Terminate interrupts it), and this process
watches it: a child that dies before its run ended fails the run with Dagster's wording, as a code server
did. A command killed with its child (its process group) leaves a run whose lease stops beating: the next
run of the month takes over and marks it failed (docs/recovery.md), as before.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import dagster as dg

from batch.charts import DRAWING_MODULE
from batch_cli.instance import WORKSPACE_YAML
from batch_cli.ui_runs import LOCATION_NAME, RunError
from engine.internals import (
    PRELOADED_MODULES,
    InProcessCodeLocation,
    InProcessCodeLocationOrigin,
    JobSubsetSelector,
    RemoteJob,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
    WorkspaceFileTarget,
)
from engine.run_launcher import process_started, run_worker, settle_worker_exit, worker_tag
from solvers import SOLVING_MODULES

# The run worker's console (Dagster's step logs): beside the instance, as the code server's was.
WORKER_LOG = Path("logs") / "cli-run-worker.log"
FORKED_FROM = "the batch-admin command that created it (no code server)"
# What the child imports while the command creates the run (the run's steps would import them): what opening
# the instance imports (as engine/worker_preload.py) and, by the job's nodes, what their steps import on first
# use and the code location does not: the validation's great-expectations (2-4 s, the largest cold cost of such
# a run; checks.expectations sets its analytics off first), the solve's OR-Tools and SciPy (0.5 s), matplotlib
# for the steps that draw a version's charts (the export; the reports a finalize or an unlock rewrites: 0.4 s).
# A job without those nodes (the plan draws and solves nothing) does not wait for them.
WARM_MODULES = (*PRELOADED_MODULES, "dagster_postgres", "alembic.command", "pyarrow.dataset")
STEP_MODULES = {"validated_inputs": ("checks.expectations",), "allocation_parts": SOLVING_MODULES,
                **dict.fromkeys(("allocation_export", "final_allocation", "unlock_finalized_month"), (DRAWING_MODULE,))}


def warm_modules(remote_job: RemoteJob) -> tuple[str, ...]:
    """What the run worker of a run of this job imports before its run starts."""
    return WARM_MODULES + tuple(name for node, names in STEP_MODULES.items()
                                if remote_job.has_node_invocation(node) for name in names)


class LocalLocation:
    """The workspace's code location, loaded in this process."""

    def __init__(self, the_instance: dg.DagsterInstance):
        origins = [o for o in WorkspaceFileTarget(paths=[str(WORKSPACE_YAML)]).create_origins()
                   if o.location_name == LOCATION_NAME]
        if not origins:
            raise RunError(f"{WORKSPACE_YAML} names no code location {LOCATION_NAME}.")
        self.origin = origins[0]
        # As a code server of this origin loads it: its working directory is the process's (on sys.path),
        # its container context empty; the runs' code origins are then the same as a code server's.
        target = self.origin.loadable_target_origin
        loadable = target._replace(working_directory=target.working_directory or os.getcwd())
        try:
            self.location = InProcessCodeLocation(
                InProcessCodeLocationOrigin(loadable, location_name=LOCATION_NAME, container_context={}),
                instance=the_instance)
        except Exception as exc:  # the definitions raised while loading: said as the UI says it
            raise RunError(f"The code location {LOCATION_NAME} does not load: {exc}") from exc
        self.repository = next(iter(self.location.get_repositories().values()))

    def job(self, job_name: str) -> RemoteJob:
        """The location's job of that name."""
        return self.location.get_job(JobSubsetSelector(location_name=LOCATION_NAME,
                                                       repository_name=self.repository.name,
                                                       job_name=job_name, op_selection=None))

    def create_run(self, the_instance: dg.DagsterInstance, remote_job: RemoteJob, tags: Mapping[str, str],
                   run_config: Mapping[str, Any]) -> dg.DagsterRun:
        """A run of the job with the workspace location's origin, as the UI's launchpad creates it."""
        job_name = remote_job.name
        plan = self.location.get_execution_plan(remote_job, run_config, step_keys_to_execute=None,
                                                known_state=None, instance=the_instance)
        origin = RemoteJobOrigin(repository_origin=RemoteRepositoryOrigin(self.origin, self.repository.name),
                                 job_name=job_name)
        return the_instance.create_run(
            job_name=job_name, run_id=None, run_config=run_config,
            resolved_op_selection=remote_job.resolved_op_selection, step_keys_to_execute=None,
            op_selection=None, status=None, root_run_id=None, parent_run_id=None,
            tags={**remote_job.tags, **tags}, job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=origin, job_code_origin=remote_job.get_python_origin(),
            asset_selection=None, asset_check_selection=None, asset_graph=self.repository.asset_graph,
        )


def submit(the_instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """Put the run on the instance's queue (a daemon launches it with its own workspace: the queue reads
    none of the caller's)."""
    the_instance.submit_run(run.run_id, cast(Any, None))


class Worker:
    """The run worker: a child forked from this process at once, which imports what the run's steps would
    (great-expectations, the instance's storage modules) while this process creates the run, then executes
    the run it is given (or exits when it is given none)."""

    def __init__(self, the_instance: dg.DagsterInstance, remote_job: RemoteJob):
        self._instance = the_instance
        self.exited = threading.Event()  # set once the child exited and its run was settled (_watch)
        warm = warm_modules(remote_job)
        log = Path(the_instance.root_directory) / WORKER_LOG
        log.parent.mkdir(parents=True, exist_ok=True)
        ref = dg.serialize_value(the_instance.get_ref())
        read, self._write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            self.pid = os.fork()
        except OSError as exc:
            os.close(read)
            os.close(self._write)
            raise RunError(f"The run worker could not be forked: {exc}") from exc
        if self.pid == 0:
            os.close(self._write)
            _execute(ref, read, log, warm)
        os.close(read)

    def start(self, run: dg.DagsterRun) -> None:
        """Hand the run to the child, name it in the run's tags and watch it."""
        self._instance.report_dagster_event(
            dg.DagsterEvent(event_type_value=dg.DagsterEventType.RUN_STARTING.value, job_name=run.job_name),
            run_id=run.run_id)
        os.write(self._write, run.run_id.encode())
        os.close(self._write)
        self._instance.add_run_tags(run.run_id, worker_tag(self.pid, process_started(self.pid)))
        threading.Thread(target=_watch, args=(self._instance, run.run_id, self.pid, self.exited),
                         name=f"watch-{run.run_id[:8]}", daemon=True).start()

    def dismiss(self) -> None:
        """No run for the child (its creation failed): it exits."""
        os.close(self._write)
        os.waitpid(self.pid, 0)


def _execute(ref: str, pipe: int, log: Path, warm: tuple[str, ...]) -> None:
    """The forked child: its console to the log, the warm-up, the run it is sent, then its exit (never this
    command's exit path: the parent's atexit handlers and open connections are the parent's)."""
    code = 1
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        # New stream objects: the parent's may have been locked by one of its threads (the progress view)
        # at the fork, and that thread does not exist here to release them.
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        for name in warm:
            try:
                importlib.import_module(name)
            except ImportError:  # dagster_postgres where the PostgreSQL extra is not installed
                continue
        with os.fdopen(pipe, "rb") as given:
            run_id = given.read().decode()
        if run_id:
            run_worker(ref, run_id, forked_from=FORKED_FROM)
        code = 0
    except BaseException:  # noqa: BLE001  (the run's own failures are in its event log; this is the worker's)
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _watch(the_instance: dg.DagsterInstance, run_id: str, pid: int, exited: threading.Event) -> None:
    """Fail the run when its worker exits before the run ended (killed, out of memory), as a code server
    fails the runs of its dead workers; then say the worker is gone (the command's reader looks at once)."""
    _, status = os.waitpid(pid, 0)
    try:
        settle_worker_exit(the_instance, run_id, os.waitstatus_to_exitcode(status))
    finally:
        exited.set()
