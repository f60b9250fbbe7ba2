"""The Dagster instance the CLI works with: the one under the home folder, configured like the UI's."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import dagster as dg

from engine.internals import QueuedRunCoordinatorDaemon, get_daemon_statuses
from resources.event_log_anchors import LIMIT
from resources.event_log_anchors import event_log_anchors as anchors_in
from resources.execution import SOLVER_POOL
from resources.settings import DAEMON_SILENCE_S, Settings
from solvers.schema import SolverParams

REPO_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_YAML = REPO_ROOT / "dagster.yaml"
POSTGRES_YAML = REPO_ROOT / "deploy" / "postgres" / "dagster.yaml"
WORKSPACE_YAML = REPO_ROOT / "workspace.yaml"


def instance_yaml(settings: Settings) -> Path:
    """The instance configuration: PostgreSQL when configured, the embedded default otherwise."""
    return POSTGRES_YAML if settings.postgres_url else EMBEDDED_YAML


def prepare(settings: Settings | None = None) -> Settings:
    """Export the deployment's settings for the Dagster processes and put the selected dagster.yaml
    into DAGSTER_HOME."""
    settings = settings or Settings.from_env()
    settings.export()
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    source = instance_yaml(settings)
    if not target.exists() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)
    return settings


def instance() -> dg.DagsterInstance:
    """The Dagster instance; created under a file lock, so that two first runs on a new home
    do not both create and stamp its SQLite storage."""
    home = prepare().dagster_home
    with open(home / ".instance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            the_instance = dg.DagsterInstance.get()
            size_solver_pool(the_instance)
            return the_instance
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def size_solver_pool(the_instance: dg.DagsterInstance) -> None:
    """Give the solver pool as many slots as the cores carry solves (each uses `workers` threads),
    unless an operator set it: contention would silently lower quality under wall-clock limits."""
    storage = the_instance.event_log_storage
    if SOLVER_POOL not in storage.get_concurrency_keys():
        storage.set_concurrency_slots(SOLVER_POOL, max(1, (os.cpu_count() or 1) // SolverParams().workers))



def daemon_running(the_instance: dg.DagsterInstance) -> bool:
    """True when a Dagster daemon is dequeuing runs of this instance (a heartbeat within a minute)."""
    daemon_type = QueuedRunCoordinatorDaemon.daemon_type()
    status = get_daemon_statuses(the_instance, [daemon_type], ignore_errors=True,
                                 heartbeat_tolerance_seconds=DAEMON_SILENCE_S).get(daemon_type)
    return bool(status and status.healthy)


def event_log_anchors(limit: int = LIMIT) -> list[dict]:
    """The audit anchors in the event log of the CLI's instance (resources/event_log_anchors.py)."""
    return anchors_in(instance(), limit)
