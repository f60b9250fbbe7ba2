"""The instance's run coordinator: Dagster's run queue, looked at twice a second.

Dagster's QueuedRunCoordinator takes whole seconds for the daemon's look at the queue, and its daemon
waits in steps of half a second between looks: with 1 s a launched run waited 0.5 s on average (up to
1 s) before the daemon started it. Half a second halves that; a look at the queue is a query or two of
the run storage. Everything else (limits per tag, pools, retries) is Dagster's, configured as for
`run_queue` (dagster.yaml's `concurrency` section).

In a daemon, its first look at the queue also creates the instance's run launcher, which Dagster
creates only at the first launch: the warm run launcher's server (engine/run_launcher.py) then
imports while nobody waits, and the first run after a daemon start is forked warm too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import dagster as dg

from engine.internals import ConfigurableClassData, RunQueueConfig
from engine.run_launcher import in_daemon

DEFAULT_INTERVAL_S = 0.5


class PromptRunQueue(dg.QueuedRunCoordinator):
    """QueuedRunCoordinator whose `dequeue_interval_seconds` may be a fraction of a second."""

    def __init__(self, dequeue_interval_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        interval = DEFAULT_INTERVAL_S if dequeue_interval_seconds is None else float(dequeue_interval_seconds)
        if interval <= 0:
            raise ValueError(f"run_coordinator dequeue_interval_seconds must be above 0, not {interval:g}: "
                             "the daemon would query the run queue without pause.")
        self._interval = interval

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        fields = dict(cast(Mapping[str, Any], super().config_type()))  # Dagster's fields, one replaced
        fields["dequeue_interval_seconds"] = dg.Field(
            float, is_required=False, default_value=DEFAULT_INTERVAL_S,
            description="Seconds between the daemon's looks at the run queue (fractions allowed; the "
                        "daemon waits in steps of half a second).")
        return fields

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> PromptRunQueue:
        return cls(inst_data=inst_data, **config_value)

    @property
    def dequeue_interval_seconds(self) -> float:  # type: ignore[override]  # Dagster's daemon takes any number
        return self._interval

    def get_run_queue_config(self) -> RunQueueConfig:
        if in_daemon():  # the daemon's look at the queue (each iteration): its launcher exists from now on
            _ = self._instance.run_launcher
        return super().get_run_queue_config()
