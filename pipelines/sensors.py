"""Sensors: alerts for what happens outside a run's own success, and runs for actuals that land.
Every alert goes through AlertRaiser: the alerts table first (de-duplicated by key), then
the log and the webhook. Re-evaluating a condition is therefore harmless.
"""


import dataclasses
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from assets.partitions import monthly_partitions
from batch import alert_rules
from batch.alerts import Alert
from batch.months import MONTH_RE
from batch.names import LANDING_DIR, PARTITION_TAG
from batch.roles import MONTH_TAG
from pipelines.jobs import actuals_job, month_tags
from resources.control_store import ControlStore
from resources.dagster_resources import AlertsResource, ControlStoreResource, StorageResource

RUN_FAILURE_SENSOR = "run_failure_alerts"
FAILED_CHECKS_SENSOR = "failed_check_alerts"
LOCKS_SENSOR = "lock_alerts"
ACTUALS_SENSOR = "actuals_arrival"
OUTBOX_SENSOR = "alert_outbox"

ACTUALS_FILES = ("actuals.parquet", "actuals.csv")
RUNNING = dg.DefaultSensorStatus.RUNNING


def _raise_all(alerts: AlertsResource, store: ControlStore, found: Iterable[Alert]) -> int:
    """Raise every alert; returns how many were new (not already in the alerts table)."""
    raiser = alerts.dispatcher(store)
    return sum(1 for alert in found if raiser.raise_alert(alert) is not None)


def _run_month(tags: Mapping[str, str]) -> str | None:
    return tags.get(MONTH_TAG) or tags.get(PARTITION_TAG) or None


# ------------------------------------------------------------------ run failures

def _failure_error(context: dg.RunFailureSensorContext) -> str:
    """The first failed step's error (what went wrong), else the run failure message."""
    for event in context.get_step_failure_events():
        error = getattr(event.event_specific_data, "error", None)
        if error is not None and error.message:
            return error.message.strip()
    return (context.failure_event.message or "").strip()


def _recent_failures(store: ControlStore, now: datetime, window_hours: float,
                     exclude_run_id: str) -> list[dict[str, Any]]:
    """Failed runs already alerted on within the window, as run_failures() facts."""
    since = now - timedelta(hours=window_hours)
    facts = []
    for row in store.alerts():
        if row["rule"] != alert_rules.RULE_RUN_FAILURE or row["details"].get("run_id") == exclude_run_id:
            continue
        failed_at = row["details"].get("failed_at") or row["created_at"]
        failed_at = datetime.fromisoformat(failed_at) if isinstance(failed_at, str) else failed_at
        if failed_at.tzinfo is None:
            failed_at = failed_at.replace(tzinfo=UTC)
        if failed_at >= since:
            facts.append({"run_id": row["details"]["run_id"], "job_name": row["details"].get("job_name"),
                          "month": row["month"], "failed_at": failed_at})
    return facts


def make_run_failure_sensor(window_hours: float = 24, max_failures: int = 3) -> dg.SensorDefinition:
    """Alert on every failed run of this code location, and on too many failures in a window."""

    @dg.run_failure_sensor(name=RUN_FAILURE_SENSOR, default_status=RUNNING,
                           description=f"Alerts on each failed run, and when more than {max_failures} "
                                       f"runs fail within {window_hours:g} hours.")
    def run_failure_alerts(context: dg.RunFailureSensorContext, control: ControlStoreResource,
                           alerts: AlertsResource) -> None:
        store = control.store()
        run = context.dagster_run
        now = datetime.now(UTC)
        failure = {"run_id": run.run_id, "job_name": run.job_name, "month": _run_month(run.tags),
                   "failed_at": now, "error": _failure_error(context)}
        facts = [*_recent_failures(store, now, window_hours, run.run_id), failure]
        found = alert_rules.run_failures(facts, window_hours=window_hours, max_failures=max_failures, now=now)
        # Earlier failures were alerted on when they happened; only this run and the burst are new.
        fresh = [a for a in found
                 if a.rule == alert_rules.RULE_TOO_MANY_ERRORS or a.details.get("run_id") == run.run_id]
        fresh.extend(failed_check_alerts_of_run(context.instance, run, store))
        raised = _raise_all(alerts, store, fresh)
        context.log.info(f"Run {run.run_id} failed: {raised} alert(s) raised.")

    return run_failure_alerts


# ------------------------------------------------------------------ failed checks

def _check_fact(record: Any, versions_by_run: dict[str, int]) -> dict[str, Any]:
    """An ASSET_CHECK_EVALUATION record as a failed_checks() result dict."""
    entry = record.event_log_entry
    evaluation = entry.dagster_event.event_specific_data
    fact = {"check_name": evaluation.check_name, "passed": bool(evaluation.passed),
            "severity": evaluation.severity.value, "description": evaluation.description,
            "asset": evaluation.asset_key.to_user_string(), "run_id": entry.run_id}
    if entry.run_id in versions_by_run:
        fact["version"] = versions_by_run[entry.run_id]
    return fact


def failed_check_alerts_of_run(instance: dg.DagsterInstance, run: dg.DagsterRun, store: ControlStore) -> list[Alert]:
    """One alert per failed asset check of a finished run, named by month and version when it made one."""
    events = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    failed = [record for record in events if not record.event_log_entry.dagster_event.event_specific_data.passed]
    by_month: dict[str, list[Any]] = {}
    for record in failed:
        partition = record.event_log_entry.dagster_event.event_specific_data.partition
        by_month.setdefault(partition or _run_month(run.tags) or "", []).append(record)
    found: list[Alert] = []
    for month, month_records in by_month.items():
        versions_by_run = ({v["run_id"]: v["version"] for v in store.versions(month) if v["run_id"]}
                           if month else {})
        facts = [_check_fact(record, versions_by_run) for record in month_records]
        # Without a version (a blocking check stopped the run) the run tells failures apart.
        found.extend(alert if "version" in alert.details
                     else dataclasses.replace(alert, dedup_key=f"{alert.dedup_key}:run:{run.run_id}")
                     for alert in alert_rules.failed_checks(month or None, facts))
    return found


def make_failed_checks_sensor() -> dg.SensorDefinition:
    """Alert on failed asset checks of green runs (WARN checks, e.g. far from the trailing months);
    failed runs are covered by the run failure sensor, which reports their failed checks too."""

    @dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, name=FAILED_CHECKS_SENSOR,
                          default_status=RUNNING,
                          description="Alerts on every failed asset check evaluation of a successful run.")
    def failed_check_alerts(context: dg.RunStatusSensorContext, control: ControlStoreResource,
                            alerts: AlertsResource) -> None:
        store = control.store()
        raised = _raise_all(alerts, store, failed_check_alerts_of_run(context.instance, context.dagster_run, store))
        context.log.info(f"Run {context.dagster_run.run_id}: {raised} failed-check alert(s) raised.")

    return failed_check_alerts


# ------------------------------------------------------------------ locks

def lock_facts(store: ControlStore) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Temporary locks as lock-rule dicts, and the phase of every locked month."""
    held = [lock for lock in store.all_locks() if lock is not None]
    locks: list[dict[str, Any]] = [{"month": lock.month, "holder": lock.holder, "admins": lock.admins,
                                    "kind": "temporary", "acquired_at": lock.acquired_at,
                                    "expires_at": lock.expires_at} for lock in held]
    phases = {lock.month: store.month(lock.month)["phase"] for lock in held}
    return locks, phases


def make_lock_sensor(minimum_interval_seconds: int = 300) -> dg.SensorDefinition:
    """Alert on temporary locks past their TTL and on locks of months in an unexpected phase."""

    @dg.sensor(name=LOCKS_SENSOR, default_status=RUNNING, minimum_interval_seconds=minimum_interval_seconds,
               description="Alerts on stale temporary locks, on locks of open or finalized months, and on requests that expired.")
    def lock_alerts(context: dg.SensorEvaluationContext, control: ControlStoreResource, alerts: AlertsResource):
        store = control.store()
        locks, phases = lock_facts(store)
        found = [*alert_rules.stale_locks(locks), *alert_rules.unexpected_locks(locks, phases)]
        raised = _raise_all(alerts, store, found)
        # Requests nobody decided in time expire here, each with an alert (the outbox delivers it).
        expired = store.expire_requests()
        return dg.SkipReason(f"{len(locks)} lock(s) checked; {raised} new alert(s); {len(expired)} request(s) expired.")

    return lock_alerts


# ------------------------------------------------------------------ actuals

def actuals_fingerprints(home: Path) -> dict[str, str]:
    """month -> fingerprint (file name, mtime, size) of every landed actuals file."""
    landing = Path(home) / LANDING_DIR
    found: dict[str, str] = {}
    if not landing.is_dir():
        return found
    for folder in sorted(landing.iterdir()):
        if not (folder.is_dir() and MONTH_RE.fullmatch(folder.name)):
            continue
        parts = []
        for name in ACTUALS_FILES:
            path = folder / name
            if path.is_file():
                stat = path.stat()
                parts.append(f"{name}:{stat.st_mtime_ns}:{stat.st_size}")
        if parts:
            found[folder.name] = "|".join(parts)
    return found


def make_actuals_sensor(minimum_interval_seconds: int = 300) -> dg.SensorDefinition:
    """Request planned_vs_actual for a month whose actuals landed (or changed) once it has versions."""
    @dg.sensor(name=ACTUALS_SENSOR, job=actuals_job, default_status=RUNNING,
               minimum_interval_seconds=minimum_interval_seconds,
               description="Materializes planned_vs_actual when landing/YYYY-MM/actuals.* arrives or changes.")
    def actuals_arrival(context: dg.SensorEvaluationContext, storage: StorageResource):
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        exports = storage.exports()
        partitions = set(monthly_partitions.get_partition_keys())
        requests = []
        for month, files in actuals_fingerprints(storage.home_path()).items():
            latest = exports.latest_version(month)
            if latest is None or month not in partitions:
                continue  # nothing planned to compare with yet: look again on a later tick
            # A new version changes the planned side, so it is part of the fingerprint too.
            fingerprint = f"{files}|v{latest}"
            if seen.get(month) == fingerprint:
                continue
            seen[month] = fingerprint
            requests.append(dg.RunRequest(partition_key=month, run_key=f"actuals:{month}:{fingerprint}",
                                          tags=month_tags(month)))
        if not requests:
            return dg.SkipReason("No new actuals for a month with versions.")
        context.update_cursor(json.dumps(seen, sort_keys=True))
        return requests

    return actuals_arrival


# ------------------------------------------------------------------ outbox

def make_alert_outbox_sensor(minimum_interval_seconds: int = 30) -> dg.SensorDefinition:
    """Send again every alert that a sink (the webhook) did not take, with backoff, until it does."""

    @dg.sensor(name=OUTBOX_SENSOR, default_status=RUNNING, minimum_interval_seconds=minimum_interval_seconds,
               description="Retries undelivered alerts (webhook down) with backoff until delivered.")
    def alert_outbox(context: dg.SensorEvaluationContext, control: ControlStoreResource, alerts: AlertsResource):
        store = control.store()
        tried, delivered = alerts.dispatcher(store).retry_pending()
        return dg.SkipReason(f"{tried} pending alert(s) sent again; {delivered} delivered.")

    return alert_outbox


def all_sensors() -> list:
    """Every sensor of the code location, as definitions.py registers them."""
    return [make_run_failure_sensor(), make_failed_checks_sensor(), make_lock_sensor(), make_actuals_sensor(),
            make_alert_outbox_sensor()]
