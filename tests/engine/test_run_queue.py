"""The instance's run queue: Dagster's QueuedRunCoordinator with a sub-second look at the queue."""

from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._daemon.controller import create_daemon_of_type
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from engine.run_queue import DEFAULT_INTERVAL_S, PromptRunQueue

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("config", ["dagster.yaml", "deploy/postgres/dagster.yaml"])
def test_both_instances_queue_runs_with_their_limits_and_a_half_second_daemon(config, tmp_path):
    text = (ROOT / config).read_text()
    assert "run_queue:" not in text  # Dagster refuses run_queue beside run_coordinator
    settings = yaml.safe_load(text)
    settings.pop("storage", None)  # the PostgreSQL one's: the queue's settings are what is tested here
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(settings))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, PromptRunQueue) and isinstance(coordinator, dg.QueuedRunCoordinator)
        assert coordinator.dequeue_interval_seconds == DEFAULT_INTERVAL_S == 0.5
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 4
        assert {limit["key"] for limit in queue.tag_concurrency_limits} == {"dagster/partition", "batch_admin/month"}
        daemon = create_daemon_of_type(QueuedRunCoordinatorDaemon.daemon_type(), instance)
        assert daemon.interval_seconds == 0.5
    assert "class: PromptRunQueue" in text and "dequeue_interval_seconds: 0.5" in text


def test_an_interval_of_zero_or_less_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="above 0.*without pause"):
        PromptRunQueue(dequeue_interval_seconds=0)
    assert PromptRunQueue(dequeue_interval_seconds=2).dequeue_interval_seconds == 2.0
    assert PromptRunQueue().dequeue_interval_seconds == DEFAULT_INTERVAL_S
