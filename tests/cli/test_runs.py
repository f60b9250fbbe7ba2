"""How the CLI decides between the run queue and a direct launch, and when it stops following a run."""

from __future__ import annotations

import threading
import time

import dagster as dg
import pytest
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster._daemon.types import DaemonHeartbeat

from batch_cli import runs
from batch_cli.instance import daemon_running
from batch_cli.runs import RunError, RunEvents, follow


def beat(instance: dg.DagsterInstance, seconds_ago: float) -> None:
    instance.add_daemon_heartbeat(DaemonHeartbeat(time.time() - seconds_ago,
                                                  QueuedRunCoordinatorDaemon.daemon_type(), None, None))


def test_without_a_daemon_runs_are_launched_directly(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert not daemon_running(instance)


def test_a_daemon_that_beat_recently_serves_the_queue(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        beat(instance, seconds_ago=5)
        assert daemon_running(instance)


def test_a_daemon_silent_for_two_beats_no_longer_counts(tmp_path):
    # Dagster's own tolerance is 30 minutes: a CLI run would wait that long in a queue nobody serves.
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        beat(instance, seconds_ago=90)
        assert not daemon_running(instance)


def started_run(instance: dg.DagsterInstance) -> str:
    run = instance.add_run(dg.DagsterRun(job_name="execute_job", status=dg.DagsterRunStatus.STARTED))
    return run.run_id


def test_a_followed_run_that_is_deleted_ends_the_follower_with_one_sentence(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        run_id = started_run(instance)
        threading.Timer(1.0, instance.delete_run, args=(run_id,)).start()
        with pytest.raises(RunError, match=f"Run {run_id} was deleted while this command followed it"):
            follow(instance, run_id, RunEvents())


def test_a_followed_run_that_stops_being_updated_ends_the_follower(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "STALL_SECONDS", 1.0)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        run_id = started_run(instance)
        with pytest.raises(RunError, match=f"Run {run_id} has not been updated for 1 s .*gone or hung"):
            follow(instance, run_id, RunEvents())
