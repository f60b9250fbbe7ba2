"""Runs on Dagster's Celery executor: real RabbitMQ, real PostgreSQL, `batch-admin worker` processes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg2
import pytest

from assets.monthly import monthly_assets
from batch_cli.instance import prepare
from pipelines.definitions import defs
from resources.control_store import ControlStore
from resources.settings import Settings, psycopg2_url
from tests.celery.conftest import CLI_TIMEOUT_S, Deployment
from tests.conftest import use_home
from tests.e2e.conftest import BIN, _signal_group, dagster_services
from tests.e2e.test_graphql_postgres import LAUNCH_BACKFILL, LOCATION, REPOSITORY, months_around_today, wait_backfill
from tests.signing import key, ticket_tags

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(600),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:gql.client")]

M1, M2, M3 = months_around_today()
ALLOCATION_COLUMNS = ["request_id", "resource_id", "units", "cost", "status", "reason"]
KILL_WAIT_S = 120


def land(deployment: Deployment, month: str, requests: int, resources: int, *params: str,
         env: dict[str, str] | None = None) -> None:
    deployment.cli("demo-data", month, "--requests", str(requests), "--resources", str(resources), "--seed", "3",
                   env=env)
    deployment.cli("params", month, "--actor", "alice", *[a for p in params for a in ("--set", p)], env=env)


def run(deployment: Deployment, month: str, ok: bool = True, note: str | None = None):
    args = ["run", month, "--actor", "alice", "--json", *(["--note", note] if note else [])]
    return deployment.cli(*args, ok=ok)


def workers_by_step(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[str]]:
    """Which Celery worker executed each step, from the engine events the workers wrote."""
    found: dict[str, list[str]] = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = record.dagster_event.engine_event_data
        worker = (data.metadata or {}).get("Celery worker") if data else None
        if worker is not None:
            found.setdefault(record.step_key, []).append(worker.value)
    return found


def run_failure(instance: dg.DagsterInstance, run_id: str) -> str:
    """The run's failure, with the error the executor reported."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE):
        event = record.dagster_event
        error = event.event_specific_data.error if event.event_specific_data else None
        return f"{event.message} {error.to_string() if error else ''}"
    raise AssertionError(f"run {run_id} has no RUN_FAILURE event")


def allocation(home: Path, month: str, version: int) -> pd.DataFrame:
    path = home / "exports" / "allocations" / f"month={month}" / f"version={version}" / "allocations.parquet"
    rows = pd.read_parquet(path)[ALLOCATION_COLUMNS]
    return rows.sort_values("request_id").reset_index(drop=True)


class ConnectionSampler:
    """The most connections the deployment's database had at once, sampled every 0.1 s meanwhile."""

    def __init__(self, url: str):
        self.url, self.database, self.peak = url, url.rsplit("/", 1)[1], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        # Not `with connect(...)`: that opens a transaction, in which pg_stat_activity is one snapshot.
        conn = psycopg2.connect(self.url.rsplit("/", 1)[0] + "/postgres", connect_timeout=3)
        conn.autocommit = True
        try:
            while not self._stop.wait(0.1):
                with conn.cursor() as cur:
                    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self.database,))
                    self.peak = max(self.peak, cur.fetchone()[0])
        finally:
            conn.close()

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def file_hashes(*folders: Path) -> dict[str, str]:
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in folders for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_month_of_eight_parts_runs_on_two_workers_and_equals_the_in_process_allocation(deployment, tmp_path):
    # The deterministic budget ends both solves; the time limit is only the wall safety (1.2 x), far enough
    # that a loaded machine does not cut one of the two solves short (at load 7-13 it once did at 30 s).
    params = ("time_limit_s=120", "seed=1", "deterministic_work=2", "max_parts=8")
    land(deployment, M3, 800, 60, *params)
    solver_only = deployment.start_worker("solver-only", queues="solver")
    both = deployment.start_worker("both")

    done = json.loads(run(deployment, M3).stdout)

    with deployment.instance() as instance:
        steps = workers_by_step(instance, done["run_id"])
    parts = sorted(step for step in steps if ".solve_part[" in step)
    assert len(parts) >= 4, steps
    names = {proc.pid: f"batch-admin-{proc.pid}@" for proc in (solver_only, both)}
    ran_on = {pid: {step for step, workers in steps.items() for w in workers if w.startswith(prefix)}
              for pid, prefix in names.items()}
    # Both workers executed steps; the one serving only the solver queue executed solve parts only.
    assert ran_on[solver_only.pid] and ran_on[both.pid], steps
    assert ran_on[solver_only.pid] <= set(parts), ran_on
    assert set(steps) - set(parts) <= ran_on[both.pid]
    assert all(len(workers) == 1 for workers in steps.values()), steps

    # The same month, inputs and parameters, run in-process on the embedded default.
    local = tmp_path / "in_process_home"
    local_env = {**deployment.env, "BATCH_ADMIN_HOME": str(local)}
    for name in ("BATCH_ADMIN_POSTGRES_URL", "BATCH_ADMIN_EXECUTOR", "BATCH_ADMIN_CELERY_BROKER"):
        local_env.pop(name)
    land(deployment, M3, 800, 60, *params, env=local_env)
    with pytest.MonkeyPatch.context() as mp:
        use_home(mp, local)
        mp.setenv("BATCH_ADMIN_ROLES", local_env["BATCH_ADMIN_ROLES"])  # the roles `land` accepted (test keys)
        prepare()
        with dg.instance_for_test(temp_dir=str(local / "dagster")) as instance:
            result = dg.materialize([a for a in monthly_assets if a.key.to_user_string() != "final_allocation"],
                                    partition_key=M3, instance=instance,
                                    tags=ticket_tags("alice", "__ephemeral_asset_job__", M3, key_of=key),
                                    resources=defs.resources)
        assert result.success
    pd.testing.assert_frame_equal(allocation(deployment.home, M3, 1), allocation(local, M3, 1))


def test_a_three_month_backfill_on_celery_skips_nothing_and_leaves_a_finalized_month_unchanged(deployment):
    from dagster_graphql import DagsterGraphQLClient

    for month in (M1, M2, M3):
        land(deployment, month, 300, 30, "time_limit_s=3")
    deployment.start_worker("first")
    deployment.start_worker("second")
    run(deployment, M1)
    request = json.loads(deployment.cli("finalize", M1, "--version", "1", "--actor", "alice", "--note", "ok",
                                        "--json").stdout)
    deployment.cli("approve", request["id"], "--actor", "bob")
    exports = deployment.home / "exports"
    finalized = (exports / "final" / f"month={M1}", exports / "allocations" / f"month={M1}")
    before = file_hashes(*finalized)
    assert any("/final/" in path for path in before)

    env = {**deployment.env, **Settings.from_env(deployment.env).environment()}
    with dagster_services(deployment.home / "dagster", env, deployment.logs / "services") as services, \
            ConnectionSampler(deployment.env["BATCH_ADMIN_POSTGRES_URL"]) as connections:
        client = DagsterGraphQLClient("127.0.0.1", port_number=services.port, timeout=30)
        launched = client._execute(LAUNCH_BACKFILL, {"params": {
            "selector": {"partitionSetName": "execute_job_partition_set",
                         "repositorySelector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}},
            "partitionNames": [M1, M2, M3], "forceSynchronousSubmission": True,
            "tags": [{"key": "batch_admin/ticket", "value": json.loads(deployment.cli(
                         "ticket", M1, M2, M3, "--job", "execute_job", "--actor", "alice", "--json").stdout)["value"]},
                     {"key": "batch_admin/note", "value": "celery backfill"}],
        }})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        results = wait_backfill(client, launched["backfillId"], [M1, M2, M3])

    assert results[M1]["status"] == "FAILURE"
    with deployment.instance() as instance:
        failures = [r.dagster_event.step_failure_data.user_failure_data.description
                    for r in instance.all_logs(results[M1]["runId"], of_type=dg.DagsterEventType.STEP_FAILURE)
                    if r.dagster_event.step_failure_data.user_failure_data]
        assert any(f"Month {M1} is finalized (version 1" in message for message in failures), failures
        for month in (M2, M3):
            assert results[month]["status"] == "SUCCESS", run_failure(instance, results[month]["runId"])
            skipped = instance.all_logs(results[month]["runId"], of_type=dg.DagsterEventType.STEP_SKIPPED)
            assert not skipped
            assert workers_by_step(instance, results[month]["runId"])  # executed by the Celery workers
    assert file_hashes(*finalized) == before
    # docs/deploy.md: R runs x 6 + W executing steps x 6 + daemon 9 + webserver 3 + two code servers x 5.
    assert 0 < connections.peak <= 3 * 6 + 2 * 6 + 9 + 3 + 2 * 5, connections.peak
    store = ControlStore(psycopg2_url(deployment.env["BATCH_ADMIN_POSTGRES_URL"]))
    try:
        assert [v["version"] for v in store.versions(M1)] == [1]
        for month in (M2, M3):
            assert [v["version"] for v in store.versions(month)] == [1]
            assert store.versions(month)[0]["note"] == "celery backfill"
    finally:
        store.dispose()


def wait_for_solve_on(instance: dg.DagsterInstance, prefixes: dict[int, str]) -> int:
    """The pid of a worker that has started a solve part of the month's latest run."""
    deadline = time.monotonic() + KILL_WAIT_S
    while time.monotonic() < deadline:
        runs = instance.get_runs(limit=1)
        if runs:
            for step, workers in workers_by_step(instance, runs[0].run_id).items():
                for pid, prefix in prefixes.items():
                    if ".solve_part[" in step and any(w.startswith(prefix) for w in workers):
                        return pid
        time.sleep(0.2)
    raise TimeoutError(f"no solve part started within {KILL_WAIT_S}s")


def test_a_worker_killed_during_a_solve_part_hands_it_over_and_the_month_runs_again(deployment):
    land(deployment, M2, 2000, 120, "time_limit_s=40", "max_parts=4")
    workers = {proc.pid: proc for proc in (deployment.start_worker("victim"), deployment.start_worker("survivor"))}
    prefixes = {pid: f"batch-admin-{pid}@" for pid in workers}
    runner = subprocess.Popen([str(BIN / "batch-admin"), "run", M2, "--actor", "alice", "--json"],
                              env={**deployment.env, "COLUMNS": "200"}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        with deployment.instance() as instance:
            victim = wait_for_solve_on(instance, prefixes)
            # The whole worker dies at once (main process and pool), as when its host is lost.
            _signal_group(victim, signal.SIGKILL)
            workers[victim].wait(timeout=30)
            stdout, stderr = runner.communicate(timeout=CLI_TIMEOUT_S)
    finally:
        if runner.poll() is None:
            _signal_group(runner.pid, signal.SIGKILL)
            runner.wait(timeout=30)

    assert runner.returncode == 0, stderr + deployment.worker_logs()
    run_id = json.loads(stdout)["run_id"]
    with deployment.instance() as instance:
        steps = workers_by_step(instance, run_id)
    survivor = next(pid for pid in workers if pid != victim)
    handed_over = [step for step, ran in steps.items()
                   if [w.split("@")[0] for w in ran] == [f"batch-admin-{victim}", f"batch-admin-{survivor}"]]
    assert handed_over and all(".solve_part[" in step for step in handed_over), steps

    store = ControlStore(psycopg2_url(deployment.env["BATCH_ADMIN_POSTGRES_URL"]))
    try:
        assert store.lease_holder(M2) is None
        again = json.loads(run(deployment, M2, note="after the lost worker").stdout)
        assert again["run_id"] != run_id
        assert [v["version"] for v in store.versions(M2)] == [1, 2]
    finally:
        store.dispose()


def pool_processes(worker_pid: int) -> list[int]:
    """The pool processes a worker forked (its children, read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == worker_pid:
                found.append(int(entry.name))
    return found


def test_a_pool_process_killed_alone_fails_its_step_clearly_and_the_month_runs_again(deployment):
    land(deployment, M1, 2000, 120, "time_limit_s=40", "max_parts=4")
    workers = {proc.pid: proc for proc in (deployment.start_worker("one"), deployment.start_worker("two"))}
    runner = subprocess.Popen([str(BIN / "batch-admin"), "run", M1, "--actor", "alice", "--json"],
                              env={**deployment.env, "COLUMNS": "200"}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        with deployment.instance() as instance:
            worker = wait_for_solve_on(instance, {pid: f"batch-admin-{pid}@" for pid in workers})
            # Only the process executing the step dies, as under the kernel's OOM killer.
            killed = pool_processes(worker)
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            _, stderr = runner.communicate(timeout=CLI_TIMEOUT_S)
    finally:
        if runner.poll() is None:
            _signal_group(runner.pid, signal.SIGKILL)
            runner.wait(timeout=30)

    assert killed and runner.returncode == 1, stderr + deployment.worker_logs()
    assert "WorkerLostError: Worker exited prematurely: signal 9 (SIGKILL)" in stderr, stderr
    assert workers[worker].poll() is None  # the worker itself lives on, with a new pool process
    with deployment.instance() as instance:
        failed = instance.get_runs(limit=1)[0]
        failures = [r.step_key for r in instance.all_logs(failed.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)]
    assert len(failures) == 1 and ".solve_part[" in failures[0], failures
    store = ControlStore(psycopg2_url(deployment.env["BATCH_ADMIN_POSTGRES_URL"]))
    try:
        run(deployment, M1, note="after the lost pool process")
        assert [v["version"] for v in store.versions(M1)] == [1] and store.lease_holder(M1) is None
    finally:
        store.dispose()


def test_a_worker_without_settings_fails_the_step_naming_them_and_never_uses_a_local_home(deployment):
    land(deployment, M3, 200, 20, "time_limit_s=2")
    bare = {name: value for name, value in deployment.env.items() if not name.startswith(("BATCH_ADMIN_", "DAGSTER_"))}
    bare["BATCH_ADMIN_CELERY_BROKER"] = deployment.env["BATCH_ADMIN_CELERY_BROKER"]
    deployment.start_worker("bare", env=bare)

    failed = run(deployment, M3, ok=False)

    assert failed.returncode == 1
    assert "cannot run steps: BATCH_ADMIN_POSTGRES_URL" in failed.stderr, failed.stderr
    with deployment.instance() as instance:
        run_id = instance.get_runs(limit=1)[0].run_id
        message = run_failure(instance, run_id)
    assert "cannot run steps: BATCH_ADMIN_POSTGRES_URL, BATCH_ADMIN_HOME, BATCH_ADMIN_CONTROL_URL, " \
           "BATCH_ADMIN_IO_BASE are not set on it" in message, message
    assert not (deployment.logs / "bare" / ".batch_admin").exists()
    assert "warning: BATCH_ADMIN_POSTGRES_URL, BATCH_ADMIN_HOME" in (deployment.logs / "bare.log").read_text()
    store = ControlStore(psycopg2_url(deployment.env["BATCH_ADMIN_POSTGRES_URL"]))
    try:
        assert store.lease_holder(M3) is None and store.versions(M3) == []
    finally:
        store.dispose()
