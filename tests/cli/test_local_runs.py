"""A command's own run (no ui): created in the CLI's process with the workspace's origin, executed in a
child forked from it, which run monitoring can tell from a reused pid."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import dagster as dg
from dagster._core.launcher import WorkerStatus
from dagster._core.workspace.load_target import WorkspaceFileTarget

from batch.names import WORKER_TAG
from batch_cli.instance import WORKSPACE_YAML, instance
from batch_cli.local_runs import FORKED_FROM
from engine.run_launcher import WarmRunLauncher, process_started, worker_tag


def test_a_cli_run_has_the_workspace_locations_origin_and_names_the_child_that_executed_it(materialized_month):
    the_instance = instance()
    run = the_instance.get_run_by_id(materialized_month.run["run_id"])
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    # The origin a code server of workspace.yaml gives its runs: the UI re-executes the run in its own
    # code location of that name, and backfills and sensors see the run as one of the location's.
    [workspace_origin] = WorkspaceFileTarget(paths=[str(WORKSPACE_YAML)]).create_origins()
    assert run.remote_job_origin is not None and run.job_code_origin is not None
    assert run.remote_job_origin.repository_origin.code_location_origin == workspace_origin
    pointer = run.job_code_origin.repository_origin.code_pointer
    target = workspace_origin.loadable_target_origin
    assert (pointer.module, pointer.fn_name) == (target.module_name, target.attribute)  # type: ignore[attr-defined]
    assert pointer.working_directory == os.getcwd()  # type: ignore[attr-defined]  # as a code server started here
    worker = json.loads(run.tags[WORKER_TAG])
    assert worker["host"] == socket.gethostname() and worker["pid"] != os.getpid() and worker["started"] > 0
    started = [r.event_log_entry.dagster_event.message
               for r in the_instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records]
    assert f"Started process for run (pid: {worker['pid']}), forked from {FORKED_FROM}." in started


def _run_tagged(pid: int, started: int | None) -> dg.DagsterRun:
    return dg.DagsterRun(job_name="execute_job", tags=worker_tag(pid, started))


def test_run_monitoring_sees_a_worker_forked_by_the_cli_until_it_is_gone_and_not_a_reused_pid():
    pid = os.fork()
    if pid == 0:  # the child: a worker that waits to be killed
        time.sleep(60)
        os._exit(0)
    launcher = WarmRunLauncher()
    try:
        started = process_started(pid)
        assert started is not None
        # Its command line is the parent's (not a forkserver's): its start time tells it apart.
        assert launcher.check_run_worker_health(_run_tagged(pid, started)).status == WorkerStatus.RUNNING
        # The same pid, started at another time: another process that reuses the pid.
        assert launcher.check_run_worker_health(_run_tagged(pid, started + 1)).status == WorkerStatus.FAILED
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    health = launcher.check_run_worker_health(_run_tagged(pid, started))
    assert health.status == WorkerStatus.FAILED and str(pid) in health.msg
