"""Leases that know whether their holder lives: a run beats its month's lease while its run worker
lives; a lease without a beat for a minute is taken over (by one contender only), and the dead run
is marked failed. On SQLite and PostgreSQL, plus one `kill -9` of a whole `batch-admin run`."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
import sqlalchemy as sa

from assets import guards
from assets.guards import take_month
from assets.partitions import monthly_partitions
from pipelines.executor import LeaseHeartbeat
from resources.control_store import LEASE_STALE_AFTER_S, ControlError, ControlStore, leases, utcnow
from resources.migrations import upgrade
from tests.resources.lease_contender import MONTH, take_over
from tests.signing import open_store


@pytest.fixture
def store(control_url) -> ControlStore:
    s = open_store(control_url)
    yield s
    s.dispose()


def last_beat(store: ControlStore, run_id: str, seconds_ago: float | None) -> None:
    """Set the run's last heartbeat `seconds_ago` (None: a lease taken before heartbeats)."""
    with store.engine.begin() as conn:
        conn.execute(leases.update().where(leases.c.run_id == run_id).values(
            heartbeat_at=None if seconds_ago is None else utcnow() - timedelta(seconds=seconds_ago)))


def test_a_lease_whose_heartbeat_stopped_is_taken_over_and_names_the_dead_run(store):
    assert store.acquire_lease(MONTH, "killed") is None
    assert store.lease(MONTH).to_dict()["alive"]
    last_beat(store, "killed", LEASE_STALE_AFTER_S + 1)
    lease = store.lease(MONTH)
    assert lease.dead() and re.fullmatch(r"heartbeat 6[1-3] s ago", lease.to_dict()["dead_because"])

    dead = store.acquire_lease(MONTH, "next")
    assert dead is not None and dead.run_id == "killed" and dead.heartbeat_age() > LEASE_STALE_AFTER_S
    taken = store.lease(MONTH)
    assert taken.run_id == "next" and not taken.dead() and taken.heartbeat_age() < 5
    assert store.beat_leases("killed") == 0  # a late beat of the dead run refreshes nothing


def test_a_lease_that_beats_is_not_taken_over(store):
    store.acquire_lease(MONTH, "alive")
    last_beat(store, "alive", LEASE_STALE_AFTER_S - 10)  # late, but not yet dead
    with pytest.raises(ControlError, match=r"being executed by run alive since .* \(last heartbeat 50 s ago\)"):
        store.acquire_lease(MONTH, "next")
    last_beat(store, "alive", LEASE_STALE_AFTER_S + 30)
    assert store.beat_leases("alive") == 1  # it beat again just in time
    with pytest.raises(ControlError, match="being executed by run alive"):
        store.acquire_lease(MONTH, "next")
    assert store.lease_holder(MONTH) == "alive" and store.lease(MONTH).heartbeat_age() < 5


def test_a_finished_holder_is_taken_over_at_once_and_is_not_reported_dead(store):
    store.acquire_lease(MONTH, "failed-run")
    assert store.acquire_lease(MONTH, "next", finished_holder="failed-run") is None
    assert store.lease_holder(MONTH) == "next"


def test_a_lease_from_before_heartbeats_is_held_until_it_expires(store):
    store.acquire_lease(MONTH, "old")
    last_beat(store, "old", None)
    with store.engine.begin() as conn:
        conn.execute(leases.update().values(acquired_at=utcnow() - timedelta(hours=2)))
    assert not store.lease(MONTH).dead()
    with pytest.raises(ControlError, match="being executed by run old"):
        store.acquire_lease(MONTH, "next")
    with store.engine.begin() as conn:
        conn.execute(leases.update().values(expires_at=utcnow() - timedelta(seconds=1)))
    assert store.lease(MONTH).why_dead().startswith("lease expired at")
    assert store.acquire_lease(MONTH, "next").run_id == "old"


def test_the_migration_keeps_a_held_lease_without_a_heartbeat(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'control.db'}")
    upgrade(engine, "0004")
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO leases (month, run_id, acquired_at, expires_at) VALUES (:m, 'r', :a, :e)"),
                     {"m": MONTH, "a": now, "e": now + timedelta(hours=6)})
    engine.dispose()
    store = ControlStore(f"sqlite:///{tmp_path / 'control.db'}")  # migrates on first use
    lease = store.lease(MONTH)
    assert lease.run_id == "r" and lease.heartbeat_at is None and not lease.dead()
    store.dispose()


def test_the_run_workers_heartbeat_keeps_its_lease_alive_and_stops_with_it(store):
    store.acquire_lease(MONTH, "beating")
    last_beat(store, "beating", LEASE_STALE_AFTER_S - 5)
    with LeaseHeartbeat(store.url, "beating", every_s=0.2):
        time.sleep(1.5)
        assert store.lease(MONTH).heartbeat_age() < 1.5
    last_beat(store, "beating", 30)
    time.sleep(0.6)
    assert store.lease(MONTH).heartbeat_age() >= 30  # stopped: no more beats



def test_the_heartbeat_leaves_out_the_beats_that_the_runs_steps_wrote_in_its_process(store):
    """A step beats its run's lease as it checks it (assets/guards.py): the run worker's heartbeat, in the
    same process, writes only in a gap without a step's beat, and then still every `every_s`."""
    store.acquire_lease(MONTH, "stepping")
    with LeaseHeartbeat(store.url, "stepping", every_s=0.5):
        for _ in range(8):  # a step's beat every 0.2 s: the heartbeat has nothing to add
            store.beat_leases("stepping")
            last_beat(store, "stepping", 30)  # what the heartbeat thread would overwrite, if it beat
            time.sleep(0.2)
            assert store.lease(MONTH).heartbeat_age() >= 30
        time.sleep(1.0)  # no step beats: the heartbeat does
        assert store.lease(MONTH).heartbeat_age() < 1.0


# ---------------------------------------------------------------- two contenders, one dead holder
def test_of_contenders_that_saw_the_same_dead_holder_exactly_one_takes_the_month(store):
    store.acquire_lease(MONTH, "killed")
    last_beat(store, "killed", LEASE_STALE_AFTER_S + 5)
    assert store.lease(MONTH).dead()  # every contender sees it dead before they start
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    players = ["a", "b", "c", "d", "e", "f"]
    procs = [ctx.Process(target=take_over, args=(store.url, who, queue)) for who in players]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    winners = [r for r in results if r[0] == "won"]
    assert len(winners) == 1, results
    assert winners[0][2] == "killed"  # the winner took it from the dead run, and is told so
    assert store.lease_holder(MONTH) == f"run-{winners[0][1]}"
    assert all("being executed by run run-" in r[2] for r in results if r[0] == "lost"), results


# ---------------------------------------------------------------- the guard marks the dead run failed
def test_the_run_that_takes_over_marks_the_dead_run_failed_and_frees_its_pool_slots(store):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_run(dg.DagsterRun(job_name="execute_job", run_id="killed", status=dg.DagsterRunStatus.STARTED))
    store.acquire_lease(MONTH, "killed")
    last_beat(store, "killed", LEASE_STALE_AFTER_S + 5)
    said: list[str] = []
    context = SimpleNamespace(partition_key=MONTH, run=SimpleNamespace(run_id="next"), instance=instance,
                              log=SimpleNamespace(warning=said.append, info=lambda text: None))
    take_month(context, store)  # type: ignore[arg-type]
    assert store.lease_holder(MONTH) == "next"
    assert instance.get_run_by_id("killed").status == dg.DagsterRunStatus.FAILURE
    assert len(said) == 1 and "Run killed is marked failed" in said[0] and re.search(r"heartbeat 6[5-7] s ago", said[0])
    failure = instance.get_records_for_run("killed", of_type=dg.DagsterEventType.RUN_FAILURE).records
    assert "took the month over" in failure[0].event_log_entry.dagster_event.message
    take_month(context, store)  # its own lease: nothing more to do
    assert len(said) == 1


def _guard_context(instance: dg.DagsterInstance, run_id: str, said: list[str]) -> SimpleNamespace:
    return SimpleNamespace(partition_key=MONTH, run=SimpleNamespace(run_id=run_id), instance=instance,
                           log=SimpleNamespace(warning=said.append, info=said.append))


@pytest.fixture
def dagster_with_a_started_run(monkeypatch):
    monkeypatch.setattr(guards, "AWAIT_POLL_S", 0.2)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_run(dg.DagsterRun(job_name="execute_job", run_id="holder", status=dg.DagsterRunStatus.STARTED))
    return instance


def test_a_run_that_meets_a_late_holder_waits_for_its_next_heartbeat_and_is_refused(store, dagster_with_a_started_run):
    store.acquire_lease(MONTH, "holder")
    last_beat(store, "holder", 10)
    said: list[str] = []
    with LeaseHeartbeat(store.url, "holder", every_s=1.0):
        started = time.monotonic()
        with pytest.raises(ControlError, match="being executed by run holder"):
            take_month(_guard_context(dagster_with_a_started_run, "next", said), store)  # type: ignore[arg-type]
    assert time.monotonic() - started < 10 and "waiting for its next heartbeat" in said[0]
    assert dagster_with_a_started_run.get_run_by_id("holder").status == dg.DagsterRunStatus.STARTED


def test_a_run_that_meets_a_holder_dying_waits_for_its_death_and_takes_over(store, dagster_with_a_started_run):
    store.acquire_lease(MONTH, "holder")
    last_beat(store, "holder", LEASE_STALE_AFTER_S - 3)  # killed just under a minute ago: dead in 3 s
    said: list[str] = []
    take_month(_guard_context(dagster_with_a_started_run, "next", said), store)  # type: ignore[arg-type]
    assert store.lease_holder(MONTH) == "next"
    assert dagster_with_a_started_run.get_run_by_id("holder").status == dg.DagsterRunStatus.FAILURE
    assert "waiting for its next heartbeat" in said[0] and "Run holder is marked failed" in said[1]


def test_the_cli_marks_the_dead_run_failed_before_it_submits(home, dagster_with_a_started_run):
    from batch_cli.runs import fail_dead_holder
    from resources.settings import Settings

    store = ControlStore(Settings.from_env().control_url)
    store.acquire_lease(MONTH, "holder")
    assert fail_dead_holder(dagster_with_a_started_run, MONTH, "run next") is None  # alive: nothing to do
    last_beat(store, "holder", LEASE_STALE_AFTER_S + 20)
    said = fail_dead_holder(dagster_with_a_started_run, MONTH, "run next")
    assert said is not None and said.startswith("Run holder is marked failed") and re.search(r"heartbeat 8[0-2] s ago", said)
    assert dagster_with_a_started_run.get_run_by_id("holder").status == dg.DagsterRunStatus.FAILURE
    assert fail_dead_holder(dagster_with_a_started_run, MONTH, "run next") is None  # failed already
    assert store.lease_holder(MONTH) == "holder"  # the lease itself is the next run's to take over
    store.dispose()


def test_status_shows_who_executes_a_month_and_whether_it_lives(home):
    from click.testing import CliRunner

    from batch_cli.main import main
    from resources.settings import Settings

    store = ControlStore(Settings.from_env().control_url)
    store.acquire_lease(MONTH, "holder")
    shown = CliRunner().invoke(main, ["status", MONTH], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert "executing: run holder since" in shown.output and re.search(r"last heartbeat [0-5] s ago", shown.output)
    last_beat(store, "holder", 75)
    shown = CliRunner().invoke(main, ["status", MONTH], catch_exceptions=False)
    assert re.search(r"dead \(heartbeat 7[5-9] s ago\); the next run takes over", shown.output), shown.output
    lease = json.loads(CliRunner().invoke(main, ["status", MONTH, "--json"], catch_exceptions=False).stdout)["lease"]
    assert (lease["run_id"], lease["alive"]) == ("holder", False) and lease["dead_because"].startswith("heartbeat 7")
    store.release_lease(MONTH, "holder")
    assert json.loads(CliRunner().invoke(main, ["status", MONTH, "--json"]).stdout)["lease"] is None
    store.dispose()


# ---------------------------------------------------------------- kill -9 of a whole `batch-admin run`
E2E_MONTH = monthly_partitions.get_partition_keys()[-1]
BIN = Path(sys.executable).with_name("batch-admin")


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([str(BIN), *args], env={**os.environ, "COLUMNS": "200"}, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _solving_run(instance: dg.DagsterInstance, deadline: float) -> str:
    """The id of the month's run once one of its solve steps has started."""
    while time.monotonic() < deadline:
        for run in instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": E2E_MONTH}), limit=1):
            starts = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_START).records
            if any((r.event_log_entry.step_key or "").startswith("allocation_parts.solve_part") for r in starts):
                return run.run_id
            assert not run.is_finished, f"run {run.run_id} ended before its solve: {run.status}"
        time.sleep(0.5)
    raise AssertionError("no solve step started in time")


# The deployment's lease timing, made short for this test (BATCH_ADMIN_LEASE_STALE_S): a killed run's lease
# is dead after 20 s without a beat (the run worker beats every 5 s), not the default 60 s; the test waits for
# that death, so the default would cost it ~40 s more and test nothing else.
E2E_STALE_S = 20


@pytest.mark.slow
def test_a_run_killed_during_its_solve_frees_its_month_within_a_minute(home, capsys, monkeypatch):
    from batch_cli.instance import instance as dagster_instance
    from resources.settings import Settings, lease_stale_after_s

    monkeypatch.setenv("BATCH_ADMIN_LEASE_STALE_S", str(E2E_STALE_S))  # this process and every one it starts
    assert lease_stale_after_s() == E2E_STALE_S
    cli("demo-data", E2E_MONTH, "--requests", "400", "--resources", "40", "--seed", "3")
    cli("params", E2E_MONTH, "--actor", "alice", "--set", "time_limit_s=120", "--set", "gap_tolerance=0")  # a long solve
    log = open(home / "killed-run.log", "wb")
    proc = subprocess.Popen([str(BIN), "run", E2E_MONTH, "--actor", "alice", "--note", "x"], env=dict(os.environ),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    instance = dagster_instance()
    store = ControlStore(Settings.from_env().control_url)
    try:
        old = _solving_run(instance, time.monotonic() + 400)
        lease = store.lease(E2E_MONTH)
        assert lease is not None and lease.run_id == old and not lease.dead()
        before = cli("status", E2E_MONTH).stdout
        assert f"executing: run {old} since" in before and "last heartbeat" in before

        # The CLI, its code server, the run worker and the step processes share one process group
        # (the CLI's session): a terminal closed or a machine lost takes them all, as this does.
        os.killpg(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        proc.wait(timeout=30)
        assert instance.get_run_by_id(old).status == dg.DagsterRunStatus.STARTED  # Dagster alone never learns

        # The next run, started at once: it waits for the dead run's lease to die, then takes it over.
        cli("params", E2E_MONTH, "--actor", "alice", "--set", "time_limit_s=5")  # a short retry
        retry = subprocess.Popen([str(BIN), "run", E2E_MONTH, "--actor", "alice", "--note", "retry", "--json"],
                                 env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        shown = None
        while True:
            lease = store.lease(E2E_MONTH)
            # Dead, or already taken over (the retry polls every second and may be quicker than this loop).
            if lease is None or lease.run_id != old or lease.dead():
                break
            assert time.monotonic() - killed < E2E_STALE_S + 20, "the dead run's lease still lives"
            if lease.heartbeat_age() > E2E_STALE_S - 10 and shown is None:
                shown = cli("status", E2E_MONTH).stdout  # late, not yet dead
            time.sleep(0.2)
        free_after = time.monotonic() - killed
        assert shown is not None and f"executing: run {old} since" in shown and "last heartbeat" in shown
        out, err = retry.communicate(timeout=600)
        done_after = time.monotonic() - killed
        assert retry.returncode == 0, out + err
        assert json.loads(out)["version"] == 1
        failed = instance.get_run_by_id(old)
        assert failed.status == dg.DagsterRunStatus.FAILURE
        failure = instance.get_records_for_run(old, of_type=dg.DagsterEventType.RUN_FAILURE).records
        message = failure[0].event_log_entry.dagster_event.message
        assert f"Run {old} is marked failed" in message and "heartbeat" in message, message
        assert store.lease(E2E_MONTH) is None  # the retry released the month at its end
        assert "intact" in cli("audit", "--verify").stdout
        with capsys.disabled():
            print(f"\nkill -9 -> month free after {free_after:.1f} s; retry done after {done_after:.1f} s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        store.dispose()


def test_the_lease_timing_is_a_setting_read_when_used(store, monkeypatch):
    from resources.settings import SettingsError, lease_heartbeat_s, lease_stale_after_s

    assert (lease_stale_after_s({}), lease_heartbeat_s({})) == (LEASE_STALE_AFTER_S, 15)
    short = {"BATCH_ADMIN_LEASE_STALE_S": "20"}
    assert (lease_stale_after_s(short), lease_heartbeat_s(short)) == (20, 5)
    for wrong in ("0", "-5", "soon"):
        with pytest.raises(SettingsError, match="BATCH_ADMIN_LEASE_STALE_S"):
            lease_stale_after_s({"BATCH_ADMIN_LEASE_STALE_S": wrong})
    store.acquire_lease(MONTH, "killed")
    last_beat(store, "killed", 25)
    assert not store.lease(MONTH).dead()  # alive by the default 60 s
    monkeypatch.setenv("BATCH_ADMIN_LEASE_STALE_S", "30")
    with pytest.raises(ControlError, match="once its heartbeat is 30 s old"):
        store.acquire_lease(MONTH, "next")
    monkeypatch.setenv("BATCH_ADMIN_LEASE_STALE_S", "20")
    assert store.lease(MONTH).why_dead() == "heartbeat 25 s ago"
    assert store.acquire_lease(MONTH, "next").run_id == "killed"
