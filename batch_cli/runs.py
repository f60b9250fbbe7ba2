"""How the CLI runs jobs: through the Dagster instance under the home folder, so runs show in the UI."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import threading
import uuid
from collections.abc import Callable

import dagster as dg


from resources.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_YAML = REPO_ROOT / "dagster.yaml"
POSTGRES_YAML = REPO_ROOT / "deploy" / "postgres" / "dagster.yaml"
MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class OrchestrationError(Exception):
    """A run that could not start or did not succeed; str() is one clear sentence."""


@dataclass
class RunOutcome:
    """What a job run did."""

    run_id: str
    success: bool
    error: str | None = None


def check_month(month: str, partitioned: bool = True) -> str:
    """A YYYY-MM key; for runs, one of the monthly partitions."""
    if not MONTH_RE.match(month or ""):
        raise OrchestrationError(f"Month {month!r} must look like YYYY-MM (e.g. 2026-12).")
    if partitioned:
        from assets.partitions import monthly_partitions

        keys = monthly_partitions.get_partition_keys()
        if month not in keys:
            raise OrchestrationError(
                f"Month {month} is not one of the monthly partitions ({keys[0]} .. {keys[-1]}, next month included)."
            )
    return month


def psycopg2_url(url: str) -> str:
    """The same PostgreSQL URL with the psycopg2 driver named explicitly."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql+psycopg2://{rest}" if sep and scheme in ("postgresql", "postgres") else url


def instance_yaml(settings: Settings) -> Path:
    """The instance configuration: PostgreSQL when configured, the embedded default otherwise."""
    return POSTGRES_YAML if settings.postgres_url else EMBEDDED_YAML


def prepare_dagster_home(settings: Settings | None = None) -> Path:
    """Point DAGSTER_HOME at the home folder and put the selected dagster.yaml there."""
    settings = settings or Settings.from_env()
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    source = instance_yaml(settings)
    if not target.exists() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)
    os.environ["DAGSTER_HOME"] = str(home)
    if settings.postgres_url:
        # SQLAlchemy 2.1 maps a plain postgresql:// URL to psycopg 3; dagster-postgres brings psycopg2.
        os.environ["BATCH_ADMIN_POSTGRES_URL"] = psycopg2_url(settings.postgres_url)
    return home


def instance() -> dg.DagsterInstance:
    """The Dagster instance; created under a file lock, so that two first runs on a new home
    do not both create and stamp its SQLite storage."""
    home = prepare_dagster_home()
    with open(home / ".instance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return dg.DagsterInstance.get()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The first step failure, as the sentence the asset raised."""
    for event in result.all_events:
        if event.event_type_value != "STEP_FAILURE":
            continue
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            return data.user_failure_data.description
        if data.error is not None:
            return data.error.message.strip().splitlines()[-1]
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if not evaluation.passed:
                return (f"Check {evaluation.check_name} failed on {evaluation.asset_key.to_user_string()}: "
                        f"{evaluation.description or 'see the run in the Dagster UI'}.")
    return "the run failed; see it in the Dagster UI"


def _watch(instance: dg.DagsterInstance, run_id: str, done: threading.Event,
           on_progress: Callable[[str], None]) -> None:
    """Report the run's latest step and log line (solver progress) while it executes."""
    seen = 0
    while not done.wait(0.5):
        try:
            records = instance.all_logs(run_id)
        except Exception:  # noqa: BLE001 - the run may not be stored yet
            continue
        for record in records[seen:]:
            step = record.step_key or ""
            if record.is_dagster_event and record.dagster_event.event_type_value == "STEP_START":
                on_progress(f"{step} started")
            elif not record.is_dagster_event and record.user_message:
                on_progress(f"{step}: {record.user_message}")
        seen = len(records)


def run_job(job_name: str, month: str | None, tags: dict[str, str],
            run_config: dict[str, Any] | None = None,
            on_progress: Callable[[str], None] | None = None) -> RunOutcome:
    """Execute a job of the code location in this process, recorded in the instance."""
    from pipelines.definitions import defs
    from pipelines.jobs import month_tags

    job = defs.resolve_job_def(job_name)
    all_tags = {**(month_tags(month) if month else {}), **tags}
    level = os.environ.get("BATCH_ADMIN_LOG_LEVEL", "CRITICAL").upper()
    run_config = {**(run_config or {}), "loggers": {"console": {"config": {"log_level": level}}}}
    run_id = str(uuid.uuid4())
    the_instance = instance()
    done = threading.Event()
    watcher = None
    if on_progress is not None:
        watcher = threading.Thread(target=_watch, args=(the_instance, run_id, done, on_progress), daemon=True)
        watcher.start()
    try:
        result = job.execute_in_process(
            instance=the_instance, partition_key=month, tags=all_tags, run_config=run_config,
            raise_on_error=False, run_id=run_id,
        )
    finally:
        done.set()
        if watcher is not None:
            watcher.join(timeout=5)
    if not result.success:
        return RunOutcome(result.run_id, False, _failure_message(result))
    return RunOutcome(result.run_id, True)
