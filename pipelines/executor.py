"""The executor of every job, chosen when a run starts (chosen_executor): in the run worker or in
forked processes; on Dagster's public API only (Celery is the opt-in engine's, engine/executor.py).

The choice is read from the run worker's environment (resources/settings.py), never at import.
`BATCH_ADMIN_EXECUTOR=auto` (the default) executes the steps in the run worker itself when the
`solver` pool lets one solve run at a time (a small machine: nothing would run side by side, and
each forked step would cost a process), else in local processes forked from a server that imported
the product once (`multiprocess`), so that a month's solve parts run in parallel; `in_process` and
`multiprocess` force one of them. `celery` needs the engine's Definitions (engine/definitions.py).

Either way the run worker beats the run's month leases while the executor runs the plan
(`LeaseHeartbeat`): when the run's processes die (killed, their machine lost), the beats stop and
the next run of the month takes the month over within a minute (resources/control_store/lock_room.py).
Every deployment needs that (the lease is the one authority for "one run per month"), with or without
the engine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import dagster as dg

from resources.control_store import ControlStore, forget_beats, last_beat
from resources.execution import SOLVER_POOL
from resources.settings import Settings, SettingsError, lease_heartbeat_s

logger = logging.getLogger("batch_admin.lease")


class LeaseHeartbeat:
    """A daemon thread of the run worker that refreshes the heartbeat of every month lease the run
    holds, every lease_heartbeat_s() (15 s by default), until stopped; it dies with the run worker. A lease is taken by
    a run's first writing step and released by its last one; between them every step, the solve
    parts included, executes while the run worker waits on it, so the beats cover them all. Each
    writing step beats as it checks its lease (assets/guards.py): a beat that a step executing in this
    process wrote less than that ago is not written again."""

    def __init__(self, control_url: str, run_id: str, every_s: float | None = None):
        self._url, self._run_id, self._every_s = control_url, run_id, lease_heartbeat_s() if every_s is None else every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-heartbeat-{run_id[:8]}", daemon=True)

    def __enter__(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * self._every_s)
        forget_beats(self._run_id)

    def _beat(self) -> None:
        store: ControlStore | None = None
        failing = False
        due = time.monotonic() + self._every_s
        try:
            while not self._stop.wait(max(0.0, due - time.monotonic())):
                stepped = last_beat(self._run_id)  # a step of the run, executing in this process, beats as it checks
                if stepped is not None and stepped + self._every_s > time.monotonic():
                    due = stepped + self._every_s
                    continue
                due = time.monotonic() + self._every_s
                try:
                    store = store or ControlStore(self._url, migrate=False)
                    store.beat_leases(self._run_id)
                    if failing:
                        logger.warning("run %s: lease heartbeat written again", self._run_id)
                    failing = False
                except Exception as exc:  # a beat missed is retried at the next tick; the run goes on
                    if not failing:
                        logger.warning("run %s: lease heartbeat not written (%s); retrying every %s s",
                                       self._run_id, exc, self._every_s)
                    failing = True
        finally:
            if store is not None:
                store.dispose()


class LeaseBeatingExecutor(dg.Executor):
    """The chosen executor (in process, multiprocess or Celery), executing the plan inside a LeaseHeartbeat.
    Everything else is the wrapped executor's (dagster-celery reads its app_args, for one)."""

    def __init__(self, inner: dg.Executor, control_url: str):
        self._inner, self._control_url = inner, control_url

    def execute(self, plan_context, execution_plan) -> Iterator[dg.DagsterEvent]:
        with LeaseHeartbeat(self._control_url, plan_context.dagster_run.run_id):
            yield from self._inner.execute(plan_context, execution_plan)

    @property
    def retries(self):  # Dagster's RetryMode, which its public API does not export
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)


def solves_side_by_side(instance: dg.DagsterInstance) -> int:
    """How many steps of the `solver` pool the instance lets run at once (its limit, else the
    default; 1 when the storage has no pools)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return 1
    return max(1, int(storage.get_concurrency_info(SOLVER_POOL).limit or 1))


def chosen_executor(settings: Settings, instance: dg.DagsterInstance) -> str:
    """The executor a run gets: the one BATCH_ADMIN_EXECUTOR names; for `auto`, in the run worker
    itself when one solve runs at a time (the monthly chain is a line of steps, and only solve parts
    could run side by side), which spares a process start-up and a fork per step, else forked
    processes, so that parts solve in parallel."""
    if settings.executor != "auto":
        return settings.executor
    return "in_process" if solves_side_by_side(instance) <= 1 else "multiprocess"


# The configuration of the `batch_admin` executor: the multiprocess executor's, whose `retries` and
# `step_dependency_config` the in-process executor reads as well.
EXECUTOR_CONFIG = dg.multiprocess_executor.config_schema.as_field()
EXECUTOR_REQUIREMENTS = dg.multiple_process_executor_requirements()
# Makes the executor of a kind that chosen_executor names beyond in_process and multiprocess (the engine's Celery).
ExecutorMaker = Callable[[dg.InitExecutorContext, Settings], dg.Executor]


def dagster_executor(init_context: dg.InitExecutorContext, kind: str) -> dg.Executor:
    """Dagster's in-process or multiprocess executor, made from the `batch_admin` executor's config."""
    definition = dg.in_process_executor if kind == "in_process" else dg.multiprocess_executor
    create = cast(Callable[[dg.InitExecutorContext], dg.Executor], definition.executor_creation_fn)
    return create(init_context)


def lease_beating_executor(init_context: dg.InitExecutorContext,
                           more: dict[str, ExecutorMaker] | None = None) -> dg.Executor:
    """The executor chosen_executor names (made by `more` for a kind beyond Dagster's two), beating the
    run's leases while it executes."""
    settings = Settings.from_env()
    kind = chosen_executor(settings, init_context.instance)
    if kind in ("in_process", "multiprocess"):
        inner = dagster_executor(init_context, kind)
    elif more and kind in more:
        inner = more[kind](init_context, settings)
    else:
        raise SettingsError(f"BATCH_ADMIN_EXECUTOR={kind} needs the opt-in engine: load the code location from "
                            "engine.definitions (workspace.yaml does), not pipelines.")
    return LeaseBeatingExecutor(inner, settings.control_url)


@dg.executor(name="batch_admin", config_schema=EXECUTOR_CONFIG, requirements=EXECUTOR_REQUIREMENTS)
def batch_admin_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """In process or the multiprocess executor (its config), as chosen_executor says, beating the run's
    leases while it executes."""
    return lease_beating_executor(init_context)
