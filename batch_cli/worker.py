"""`batch-admin worker`: dagster-celery's worker (its Celery app and its step task) on the deployment's broker.

`dagster-celery worker start` would write its settings into a folder of a local Dagster instance;
this worker keeps no local state: the broker comes from BATCH_ADMIN_CELERY_BROKER, the instance
from each run (the run worker sends its reference with every step), and the resources read their
settings from this process's environment when a step starts.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import celery
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from engine.executor import celery_app_args
from resources.settings import (
    CELERY_BROKER_VAR,
    CONTROL_VAR,
    HOME_VAR,
    IO_BASE_VAR,
    POSTGRES_VAR,
    Settings,
    SettingsError,
)

# What a step needs on a worker: the instance the run lives in, and the resources' settings.
STEP_SETTINGS = (POSTGRES_VAR, HOME_VAR, CONTROL_VAR, IO_BASE_VAR)


class WorkerSettingsError(RuntimeError):
    """A step reached a worker that lacks the deployment's settings; str() names them."""


def missing_settings() -> list[str]:
    return [name for name in STEP_SETTINGS if not os.environ.get(name)]


class SettingsCheckedTask(celery.Task):
    """dagster-celery's step task, refused with the names of the missing settings before it starts:
    without them the step cannot even open the run's instance, let alone record a failure there."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        missing = missing_settings()
        if missing:
            raise WorkerSettingsError(
                f"Celery worker {self.request.hostname} cannot run steps: {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set on it. Start every worker with the settings of the "
                f"run's hosts (docs/deploy.md, scale-out); it never falls back to ./.batch_admin.")
        return super().__call__(*args, **kwargs)


def worker_name() -> str:
    """Unique per process, so that several workers on one host stay apart in the run's events."""
    return f"batch-admin-{os.getpid()}@{socket.gethostname()}"


def worker_argv(queues: list[str], concurrency: int | None, name: str) -> list[str]:
    """Celery's worker command line: one task per pool process, so memory figures stay per step."""
    argv = ["worker", "--loglevel=INFO", "--queues", ",".join(queues), "--hostname", name,
            "--max-tasks-per-child", "1", "--prefetch-multiplier", "1", "--without-gossip", "--without-mingle"]
    return argv + (["--concurrency", str(concurrency)] if concurrency else [])


def run_worker(settings: Settings, queues: list[str], concurrency: int | None) -> None:
    """Serve steps from the queues until stopped (SIGTERM: finish the running steps, then exit)."""
    if not settings.celery_broker:
        raise SettingsError(f"{CELERY_BROKER_VAR} is not set: point it at the broker the runs use "
                            f"(e.g. pyamqp://guest@rabbitmq:5672//).")
    if settings.postgres_url:
        # Production settings are complete (HOME is required with them): derive the rest as every host does.
        settings.export()
    if missing_settings():
        print(f"warning: {', '.join(missing_settings())} not set: every step sent to this worker will fail "
              f"until it is restarted with them.", file=sys.stderr)
    app = make_app(celery_app_args(settings))
    create_task(app, base=SettingsCheckedTask)
    app.worker_main(argv=worker_argv(queues, concurrency, worker_name()))
