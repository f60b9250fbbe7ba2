"""How the CLI decides between the run queue and a direct launch."""

from __future__ import annotations

import time

import dagster as dg
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster._daemon.types import DaemonHeartbeat

from batch_cli.instance import daemon_running


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
