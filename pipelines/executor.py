"""The executor of every job, chosen when a run starts (chosen_executor): in the run worker, in
forked processes, or on Celery.

The choice is read from the run worker's environment (resources/settings.py), never at import.
`BATCH_ADMIN_EXECUTOR=auto` (the default) executes the steps in the run worker itself when the
`solver` pool lets one solve run at a time (a small machine: nothing would run side by side, and
each forked step would cost a process), else in local processes forked from a server that imported
the product once (`multiprocess`), so that a month's solve parts run in parallel; `in_process` and
`multiprocess` force one of them. `celery`, with `BATCH_ADMIN_CELERY_BROKER` and the PostgreSQL
instance, sends the steps to `batch-admin worker` processes through dagster-celery.

Either way the run worker beats the run's month leases while the executor runs the plan
(`LeaseHeartbeat`): when the run's processes die (killed, their machine lost), the beats stop and
the next run of the month takes the month over within a minute (resources/control_store/lock_room.py).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, cast

import dagster as dg
from celery.exceptions import TaskRevokedError
from celery.result import AsyncResult
from dagster_celery.core_execution_loop import core_celery_execution_loop
from dagster_celery.executor import CeleryExecutor
from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG

from resources.control_store import ControlStore, forget_beats, last_beat
from resources.dagster_internals import (
    ErrorSource,
    InProcessExecutor,
    RetryMode,
    StepFailureData,
    _submit_task,
    serializable_error_info_from_exc_info,
)
from resources.execution import CELERY_SETTINGS, RESULT_BACKEND, SOLVER_POOL, SOLVER_QUEUE, WORKER_IMPORTS
from resources.settings import Settings, lease_heartbeat_s

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
    """The chosen executor (multiprocess or Celery), executing the plan inside a LeaseHeartbeat.
    Everything else is the wrapped executor's (dagster-celery reads its app_args, for one)."""

    def __init__(self, inner: dg.Executor, control_url: str):
        self._inner, self._control_url = inner, control_url

    def execute(self, plan_context, execution_plan) -> Iterator[dg.DagsterEvent]:
        with LeaseHeartbeat(self._control_url, plan_context.dagster_run.run_id):
            yield from self._inner.execute(plan_context, execution_plan)

    @property
    def retries(self) -> RetryMode:
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)


class PoolRoutedCeleryExecutor(CeleryExecutor):
    """dagster-celery's executor; a step of the `solver` pool goes to the `solver` queue, and a task
    that raised on its worker is the step's failure."""

    def execute(self, plan_context, execution_plan):
        return core_celery_execution_loop(plan_context, execution_plan, step_execution_fn=_submit_by_pool)


def _submit_by_pool(app, plan_context, step, queue, priority, known_state):
    # The pool says which steps are solves (assets/parts.py); an explicit dagster-celery/queue tag wins.
    # dagster-celery's "Submitting celery task ... to queue" event, written before this is called,
    # names the tag's queue (`default`) for solve steps until solve_part carries the tag itself.
    if DAGSTER_CELERY_QUEUE_TAG not in step.tags and step.pool == SOLVER_POOL:
        queue = SOLVER_QUEUE
    return StepResult(_submit_task(app, plan_context, step, queue, priority, known_state), plan_context, step)


class StepResult:
    """A step's Celery result whose error (the pool process lost, a worker without settings) comes back
    as the step's STEP_FAILURE. dagster-celery 0.29.27 keeps a raised task aside, stops submitting and
    then waits for the run's other ready steps for ever (seen in tests/celery); a failed step instead
    skips what depends on it and fails the run."""

    def __init__(self, result: AsyncResult, plan_context, step):
        self._result, self._context, self._step = result, plan_context, step

    def ready(self) -> bool:
        return self._result.ready()

    def revoke(self) -> None:
        self._result.revoke()

    def get(self) -> list[str]:
        try:
            return self._result.get()
        except TaskRevokedError:
            raise
        except Exception:
            error = serializable_error_info_from_exc_info(sys.exc_info())
            failure = dg.DagsterEvent.step_failure_event(
                self._context.for_step(self._step), StepFailureData(error, None, ErrorSource.FRAMEWORK_ERROR),
                message=f'Step "{self._step.key}" failed on its Celery worker: {error.message.strip()}')
            return [dg.serialize_value(failure)]


def celery_executor_for(settings: Settings, retries: RetryMode) -> CeleryExecutor:
    """dagster-celery's executor on the deployment's broker, with the settings the workers share."""
    return PoolRoutedCeleryExecutor(broker=settings.celery_broker, backend=RESULT_BACKEND,
                                    include=WORKER_IMPORTS, config_source=CELERY_SETTINGS, retries=retries)


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


@dg.executor(name="batch_admin", config_schema=dg.multiprocess_executor.config_schema.as_field(),
             requirements=dg.multiple_process_executor_requirements())
def batch_admin_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Celery when the run worker's settings ask for it; else in process or the multiprocess
    executor (its config), as chosen_executor says; each beats the run's leases while it executes."""
    settings = Settings.from_env()
    retries = RetryMode.from_config(cast(Mapping[str, Mapping], init_context.executor_config["retries"]))
    kind = chosen_executor(settings, init_context.instance)
    if kind == "celery":
        return LeaseBeatingExecutor(celery_executor_for(settings, retries or RetryMode.ENABLED), settings.control_url)
    if kind == "in_process":
        return LeaseBeatingExecutor(InProcessExecutor(retries=retries or RetryMode.ENABLED), settings.control_url)
    create_multiprocess = cast(Callable[[dg.InitExecutorContext], dg.Executor],
                               dg.multiprocess_executor.executor_creation_fn)
    return LeaseBeatingExecutor(create_multiprocess(init_context), settings.control_url)
