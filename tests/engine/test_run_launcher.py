"""The warm run launcher's pieces that need no daemon (the daemon path: tests/e2e/test_graphql_postgres.py)."""

import json
import multiprocessing
import os
import shutil
import signal
import socket
import time

import dagster as dg
import pytest

from engine.internals import WorkerStatus
from engine.run_launcher import (
    PRODUCT_PACKAGES,
    PRODUCT_ROOT,
    WARM_SERVER,
    WORKER_TAG,
    WarmRunLauncher,
    code_stamp,
    in_daemon,
    pool_for_run,
)
from resources.settings import psycopg2_url

DEPLOY_POSTGRES_YAML = PRODUCT_ROOT / "deploy" / "postgres" / "dagster.yaml"


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


@pytest.mark.postgres
def test_a_warm_worker_writes_its_events_over_one_pooled_postgres_connection(postgres_url, tmp_path, monkeypatch):
    """dagster-postgres connects anew for every statement; a warm run worker's instance (pool_for_run)
    keeps one connection per storage: 30 events cost the server one session, not 30."""
    import psycopg2

    shutil.copy(DEPLOY_POSTGRES_YAML, tmp_path / "dagster.yaml")
    database = postgres_url.rsplit("/", 1)[1]

    def sessions() -> int:  # sessions ever established to the database (PostgreSQL 14+)
        with psycopg2.connect(postgres_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_stat_clear_snapshot()")
            cur.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,))
            return int(cur.fetchone()[0])

    monkeypatch.setenv("BATCH_ADMIN_POSTGRES_URL", psycopg2_url(postgres_url))
    opened = {}
    for pooled in (False, True):
        with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
            run = instance.add_run(dg.DagsterRun(job_name="execute_job"))
            if pooled:
                pool_for_run(instance)
            before = sessions()
            for _ in range(30):
                instance.report_engine_event("an event", run)
            opened[pooled] = sessions() - before - 1  # less the session sessions() itself opened
    assert opened[False] >= 30 and opened[True] <= 2, opened
