"""The warm run launcher's pieces that need no daemon (the daemon path: tests/e2e/test_graphql_postgres.py)."""

import json
import multiprocessing
import os
import signal
import socket
import time

import dagster as dg
from dagster._core.launcher import WorkerStatus

from resources.run_launcher import (
    PRODUCT_PACKAGES,
    PRODUCT_ROOT,
    WARM_SERVER,
    WORKER_TAG,
    WarmRunLauncher,
    code_stamp,
    in_daemon,
)


def test_the_code_stamp_changes_when_a_source_file_changes_or_appears(tmp_path):
    for package in PRODUCT_PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    before = code_stamp(tmp_path)
    assert before == code_stamp(tmp_path)
    target = tmp_path / "solvers" / "__init__.py"
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = code_stamp(tmp_path)
    assert touched != before
    (tmp_path / "batch" / "new.py").write_text("")
    assert code_stamp(tmp_path)[1] == touched[1] + 1


def test_the_product_root_holds_the_product_packages():
    assert all((PRODUCT_ROOT / package / "__init__.py").exists() for package in PRODUCT_PACKAGES)
    assert code_stamp()[1] > 20


def test_outside_a_daemon_the_launcher_starts_no_forkserver():
    assert not in_daemon()
    launcher = WarmRunLauncher()
    assert launcher.inst_data is None
    assert not WARM_SERVER.ready.is_set()


def _run_with_worker(host: str, pid: int) -> dg.DagsterRun:
    return dg.DagsterRun(job_name="execute_job", tags={WORKER_TAG: json.dumps({"host": host, "pid": pid})})


def test_run_monitoring_sees_a_forked_worker_running_until_it_is_killed():
    context = multiprocessing.get_context("forkserver")
    worker = context.Process(target=time.sleep, args=(60,))
    worker.start()
    launcher = WarmRunLauncher()
    try:
        run = _run_with_worker(socket.gethostname(), worker.pid)
        assert launcher.supports_check_run_worker_health
        assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(timeout=30)
    health = launcher.check_run_worker_health(run)
    assert health.status == WorkerStatus.FAILED and str(worker.pid) in health.msg


def test_run_monitoring_fails_no_run_it_cannot_see_and_no_pid_reused_by_another_program():
    launcher = WarmRunLauncher()
    # A code server's worker, or one on another host: not this launcher's to judge.
    assert launcher.check_run_worker_health(dg.DagsterRun(job_name="execute_job")).status == WorkerStatus.RUNNING
    assert launcher.check_run_worker_health(_run_with_worker("elsewhere", 1)).status == WorkerStatus.RUNNING
    # The pid now belongs to a program that is not a forked run worker (this test process).
    assert launcher.check_run_worker_health(_run_with_worker(socket.gethostname(), os.getpid())).status \
        == WorkerStatus.FAILED
