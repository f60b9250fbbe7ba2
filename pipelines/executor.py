"""The executor of every job, chosen when a run starts: multiprocess by default, Celery on request.

The choice is read from the run worker's environment (resources/settings.py), never at import:
`BATCH_ADMIN_EXECUTOR=celery` with `BATCH_ADMIN_CELERY_BROKER` and the PostgreSQL instance sends
the steps to `batch-admin worker` processes through dagster-celery; anything else runs them in
local processes forked from a server that imported the product once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import cast

import dagster as dg
from celery.exceptions import TaskRevokedError
from celery.result import AsyncResult
from dagster._core.events import DagsterEvent
from dagster._core.execution.plan.objects import ErrorSource, StepFailureData
from dagster._core.execution.retries import RetryMode
from dagster._serdes import serialize_value
from dagster._utils.error import serializable_error_info_from_exc_info
from dagster_celery.core_execution_loop import core_celery_execution_loop
from dagster_celery.executor import CeleryExecutor, _submit_task
from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG

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
            failure = DagsterEvent.step_failure_event(
                self._context.for_step(self._step), StepFailureData(error, None, ErrorSource.FRAMEWORK_ERROR),
                message=f'Step "{self._step.key}" failed on its Celery worker: {error.message.strip()}')
            return [serialize_value(failure)]


def celery_executor_for(settings: Settings, retries: RetryMode) -> CeleryExecutor:
    """dagster-celery's executor on the deployment's broker, with the settings the workers share."""
    return PoolRoutedCeleryExecutor(broker=settings.celery_broker, backend=RESULT_BACKEND,
                                    include=WORKER_IMPORTS, config_source=CELERY_SETTINGS, retries=retries)


@dg.executor(name="batch_admin", config_schema=dg.multiprocess_executor.config_schema.as_field(),
             requirements=dg.multiple_process_executor_requirements())
def batch_admin_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Celery when the run worker's settings ask for it, else the multiprocess executor (its config)."""
    settings = Settings.from_env()
    if settings.executor == "celery":
        retries = RetryMode.from_config(cast(Mapping[str, Mapping], init_context.executor_config["retries"]))
        return celery_executor_for(settings, retries or RetryMode.ENABLED)
    create_multiprocess = cast(Callable[[dg.InitExecutorContext], dg.Executor],
                               dg.multiprocess_executor.executor_creation_fn)
    return create_multiprocess(init_context)
