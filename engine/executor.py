"""The engine's executor: the product's lease-beating executor (pipelines/executor.py), plus Celery.

`BATCH_ADMIN_EXECUTOR=celery`, with `BATCH_ADMIN_CELERY_BROKER` and the PostgreSQL instance, sends the
steps to `batch-admin worker` processes through dagster-celery: a step of the `solver` pool goes to the
`solver` queue, and a task that raised on its worker comes back as the step's failure. Both take
dagster-celery's private step submission and Dagster's unexported failure types (engine/internals.py).
Every other choice (in the run worker, multiprocess) is the public executor's of pipelines/.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import cast

import dagster as dg
from celery.exceptions import TaskRevokedError
from celery.result import AsyncResult
from dagster_celery.core_execution_loop import core_celery_execution_loop
from dagster_celery.executor import CeleryExecutor
from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG

from engine.internals import (
    ErrorSource,
    RetryMode,
    StepFailureData,
    _submit_task,
    serializable_error_info_from_exc_info,
)
from pipelines.executor import EXECUTOR_CONFIG, EXECUTOR_REQUIREMENTS, lease_beating_executor
from resources.execution import CELERY_SETTINGS, RESULT_BACKEND, SOLVER_POOL, SOLVER_QUEUE, WORKER_IMPORTS
from resources.settings import Settings


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


def celery_app_args(settings: Settings) -> dict:
    """The Celery app's arguments (broker, backend, imports, settings) that the runs send steps with, for
    `batch-admin worker` to serve them (retries are each run's business, not the worker's)."""
    return celery_executor_for(settings, RetryMode.DISABLED).app_args()


def celery_for_run(init_context: dg.InitExecutorContext, settings: Settings) -> CeleryExecutor:
    """The Celery executor of a run, with the retries of the `batch_admin` executor's config."""
    retries = RetryMode.from_config(cast(Mapping[str, Mapping], init_context.executor_config["retries"]))
    return celery_executor_for(settings, retries or RetryMode.ENABLED)


@dg.executor(name="batch_admin", config_schema=EXECUTOR_CONFIG, requirements=EXECUTOR_REQUIREMENTS)
def engine_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Celery when the run worker's settings ask for it; else in process or the multiprocess executor
    (its config), as chosen_executor says; each beats the run's leases while it executes."""
    return lease_beating_executor(init_context, {"celery": celery_for_run})
