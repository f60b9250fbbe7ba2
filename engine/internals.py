"""Every name the product takes from Dagster's private modules (dagster._*, and dagster-celery's private
function), in one place: the engine's, and the CLI's through it.

A comment above each import says who uses it and why Dagster's public API does not serve. All were
checked on the Dagster version CHECKED_ON; tests/engine/test_internals.py pins the list and that
version, so an upgrade of Dagster fails there first and names what to re-check; it also fails on any
other module of the product that imports a private name of Dagster. What the public API covers
(dg.Field, dg.DagsterEvent, dg.serialize_value, dg.deserialize_value, dg.in_process_executor) is taken
from it. One more undocumented corner is reached outside this module on purpose: engine/instance.py's
graphql_refusal imports dagster_graphql's error types (public modules, but not documented) only on a
refusal, since dagster_graphql takes seconds to import.
"""

from __future__ import annotations

# batch_cli/local_runs.py: the CLI creates runs of the workspace's code location as the webserver does; the
# public API launches only jobs imported in-process, not a code location's jobs by selector.
from dagster._core.definitions.selector import JobSubsetSelector

# engine/run_launcher.py: the engine event a launcher reports its run worker with (not exported).
from dagster._core.events import EngineEventData

# engine/executor.py: a step failure event built by hand when a Celery task is revoked; its data
# types are not exported.
from dagster._core.execution.plan.objects import ErrorSource, StepFailureData

# engine/executor.py: the Celery executor's retry setting, which its constructor takes; no public type.
from dagster._core.execution.retries import RetryMode

# engine/run_launcher.py: the serialized instance handed to a forked run worker; engine/instance.py: a
# custom instance class must give Dagster's storage defaults (config_defaults), which only InstanceRef knows.
from dagster._core.instance.ref import InstanceRef

# engine/run_launcher.py: the RunLauncher interface's argument and result types (not exported).
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus

# batch_cli/local_runs.py: the run's origins name the workspace's code location (its location name and
# module), so that the UI re-executes a CLI run and backfills see it as theirs; the public API has no origin
# types and creates runs only through a code location (a code server: 3-8 s of a CLI run).
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin

# batch_cli/local_runs.py: the code location loaded in the CLI's own process (its jobs' snapshots and
# execution plans without a code server); not exported.
from dagster._core.remote_representation.code_location import InProcessCodeLocation

# batch_cli/local_runs.py: the type of that location's jobs (not exported).
from dagster._core.remote_representation.external import RemoteJob

# engine/run_queue.py: the return type of QueuedRunCoordinator.get_run_queue_config, overridden to
# allow a dequeue interval below a second.
from dagster._core.run_coordinator.queued_run_coordinator import RunQueueConfig

# engine/event_log.py: the embedded default's event log keeps a connection per shard, a subclass of Dagster's
# SQLite event log storage (its `_connect`); it is not exported, the public API names storages in dagster.yaml only.
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

# engine/event_log.py: the busy timeout of Dagster's SQLite connections, which the kept ones keep (not exported).
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS

# engine/event_log.py: Dagster's default SQLite storage (runs, event log, schedules under DAGSTER_HOME), whose
# event log the embedded default replaces (not exported).
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage

# batch_cli/local_runs.py: the origins of workspace.yaml's code locations (what a code server of it would
# be started with), read without starting one; no public workspace API.
from dagster._core.workspace.load_target import WorkspaceFileTarget

# batch_cli/instance.py: whether a daemon dequeues runs; the daemons' heartbeats have no public reader.
from dagster._daemon.controller import get_daemon_statuses

# batch_cli/instance.py: the daemon type whose heartbeat that is.
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

# engine/run_launcher.py: a warm worker executes its run exactly as Dagster's own run worker does.
from dagster._grpc.impl import core_execute_run

# engine/run_queue.py, engine/run_launcher.py: the config data of a pluggable instance class (not exported).
from dagster._serdes import ConfigurableClassData

# engine/run_launcher.py: Dagster's own wording of a run worker that died.
from dagster._utils import get_run_crash_explanation

# engine/executor.py: the error a hand-built step failure carries.
from dagster._utils.error import serializable_error_info_from_exc_info

# engine/run_launcher.py: the job of a run, reconstructed from the run's origin in the worker.
from dagster._utils.hosted_user_process import recon_job_from_origin

# engine/run_launcher.py: a run worker handles SIGINT as Dagster's run worker does.
from dagster._utils.interrupts import capture_interrupts

# engine/executor.py: dagster_celery's executor submits a step with this private function; the
# lease-beating executor submits the same task and keeps its result handle.
from dagster_celery.executor import _submit_task

CHECKED_ON = "1.13.27"

# engine/worker_preload.py: the warm workers' forkserver imports these ahead of use; opening an
# instance and a run's first steps import them, importing Dagster does not.
PRELOADED_MODULES = ("dagster._core.instance.factory", "dagster._core.storage.sqlite_storage", "dagster._utils.test")

__all__ = [
    "SQLITE_BUSY_TIMEOUT_SECONDS",
    "CheckRunHealthResult",
    "ConfigurableClassData",
    "DagsterSqliteStorage",
    "EngineEventData",
    "ErrorSource",
    "InProcessCodeLocation",
    "InProcessCodeLocationOrigin",
    "InstanceRef",
    "JobSubsetSelector",
    "LaunchRunContext",
    "QueuedRunCoordinatorDaemon",
    "RemoteJob",
    "RemoteJobOrigin",
    "RemoteRepositoryOrigin",
    "RetryMode",
    "RunQueueConfig",
    "SqliteEventLogStorage",
    "StepFailureData",
    "WorkerStatus",
    "WorkspaceFileTarget",
    "_submit_task",
    "capture_interrupts",
    "core_execute_run",
    "get_daemon_statuses",
    "get_run_crash_explanation",
    "recon_job_from_origin",
    "serializable_error_info_from_exc_info",
]
