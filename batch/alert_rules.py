"""Alert rules: pure functions from monitoring facts to a list of Alerts (empty when all is well)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from batch.alerts import Alert
from batch.lifecycle import PHASE_FINALIZED, PHASE_OPEN

RULE_UNALLOCATED_RATIO_ANOMALY = "unallocated_ratio_anomaly"
RULE_UTILIZATION_ANOMALY = "utilization_anomaly"
RULE_FAILED_CHECK = "failed_check"
RULE_RUN_FAILURE = "run_failure"
RULE_TOO_MANY_ERRORS = "too_many_errors"
RULE_STALE_LOCK = "stale_lock"
RULE_UNEXPECTED_LOCK = "unexpected_lock"
RULE_MONTH_UNLOCKED = "month_unlocked"
RULE_LOW_SUCCESS_RATE = "success_rate_below_minimum"
RULE_RESOURCE_OVER_CAPACITY = "resource_over_capacity"

# metric name in a metrics dict -> (rule, label used in messages)
RATIO_METRICS: dict[str, tuple[str, str]] = {
    "unallocated_ratio": (RULE_UNALLOCATED_RATIO_ANOMALY, "Unallocated ratio"),
    "utilization": (RULE_UTILIZATION_ANOMALY, "Utilization"),
}
MIN_TRAILING_MONTHS = 2
# Phases in which a temporary lock has no business: nothing to plan yet, or nothing may change.
PHASES_WITHOUT_TEMPORARY_LOCK = frozenset({PHASE_OPEN, PHASE_FINALIZED})


@dataclass(frozen=True)
class AlertThresholds:
    """Absolute limits a version is held to, whatever the trailing months did.

    The trend rule needs MIN_TRAILING_MONTHS months of history; these fire from the first month.
    Month parameters named PARAM_PREFIX + field (e.g. alert.min_success_rate) override the defaults.
    """

    min_success_rate: float = 0.5
    max_resource_utilization: float = 1.0

    PARAM_PREFIX = "alert."

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> AlertThresholds:
        """The defaults, overridden by any alert.* parameter of the month."""
        params = params or {}
        return cls(**{name: float(params[f"{cls.PARAM_PREFIX}{name}"])
                      for name in ("min_success_rate", "max_resource_utilization")
                      if params.get(f"{cls.PARAM_PREFIX}{name}") is not None})


def trailing_history(month: str, metric: str, trailing: Sequence[Mapping[str, Any]]) -> list[float]:
    """The trailing months' values of a metric (the month itself and missing values left out)."""
    return [past for entry in trailing if entry.get("month") != month
            if (past := _metric(entry, metric)) is not None]


def trend_skip_reason(month: str, metric: str, trailing: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the trend of a metric cannot be judged (too few trailing months), or None when it can."""
    found = len(trailing_history(month, metric, trailing))
    if found >= MIN_TRAILING_MONTHS:
        return None
    return (f"skipped: {found} trailing month{'s' if found != 1 else ''} with a {metric} before {month}, "
            f"{MIN_TRAILING_MONTHS} needed for a trend")


def threshold_breaches(
    month: str,
    current: Mapping[str, Any],
    resource_utilization: Sequence[Mapping[str, Any]],
    thresholds: AlertThresholds = AlertThresholds(),
) -> list[Alert]:
    """Alerts for a success rate below the minimum and for every resource above the maximum utilization.

    `resource_utilization`: one {resource_id, planned_units, capacity, utilization} per resource.
    """
    version = current.get("version")

    def breach(rule: str, message: str, details: dict[str, Any]) -> Alert:
        return Alert(rule=rule, severity="error", month=month, message=message, details={**details, "version": version},
                     dedup_key=_key(rule, month, f"v{version}" if version is not None else None))

    alerts = []
    rate = _metric(current, "success_rate")
    if rate is not None and rate < thresholds.min_success_rate:
        alerts.append(breach(
            RULE_LOW_SUCCESS_RATE,
            f"Only {rate:.1%} of the requests of {month} are allocated, below the minimum "
            f"{thresholds.min_success_rate:.0%}.",
            {"success_rate": rate, "min_success_rate": thresholds.min_success_rate,
             "requests": current.get("requests"), "allocated": current.get("allocated")}))
    over = [row for row in resource_utilization
            if row.get("utilization") is not None and math.isfinite(float(row["utilization"]))
            and float(row["utilization"]) > thresholds.max_resource_utilization
            or (not row.get("capacity") and row.get("planned_units"))]
    if over:
        names = ", ".join(str(row["resource_id"]) for row in over[:10]) + (" …" if len(over) > 10 else "")
        alerts.append(breach(
            RULE_RESOURCE_OVER_CAPACITY,
            f"{len(over)} resource{'s' if len(over) != 1 else ''} of {month} above "
            f"{thresholds.max_resource_utilization:.0%} of capacity: {names}.",
            {"resources": [str(row["resource_id"]) for row in over],
             "max_resource_utilization": thresholds.max_resource_utilization}))
    return alerts


@dataclass(frozen=True)
class TrendBand:
    """A month's metric against the band around its trailing months' mean (the trend checks' and alerts' rule)."""

    metric: str
    value: float
    mean: float
    stdev: float
    band: float
    months: int

    @property
    def low(self) -> float:
        return self.mean - self.band

    @property
    def high(self) -> float:
        return self.mean + self.band

    def outside(self) -> bool:
        return abs(self.value - self.mean) > self.band


def trend_band(month: str, metric: str, current: Mapping[str, Any], trailing: Sequence[Mapping[str, Any]],
               threshold_sigma: float = 3.0, min_abs: float = 0.10) -> TrendBand | None:
    """The band max(threshold_sigma * stdev, min_abs) around the trailing months' mean, or None without a value
    or with fewer than MIN_TRAILING_MONTHS trailing values (stdev: the sample standard deviation)."""
    value = _metric(current, metric)
    history = trailing_history(month, metric, trailing)
    if value is None or len(history) < MIN_TRAILING_MONTHS:
        return None
    stdev = statistics.stdev(history)
    return TrendBand(metric, value, statistics.fmean(history), stdev, max(threshold_sigma * stdev, min_abs),
                     len(history))


def ratio_anomalies(
    month: str,
    current: Mapping[str, Any],
    trailing: Sequence[Mapping[str, Any]],
    threshold_sigma: float = 3.0,
    min_abs: float = 0.10,
) -> list[Alert]:
    """Warn when the unallocated ratio or utilization is outside its trend band (trend_band); trailing entries of
    `month` itself and missing/None values are ignored."""
    alerts = []
    version = current.get("version")
    for metric, (rule, label) in RATIO_METRICS.items():
        found = trend_band(month, metric, current, trailing, threshold_sigma, min_abs)
        if found is None or not found.outside():
            continue
        value, mean, band = found.value, found.mean, found.band
        distance = value - mean
        direction = "above" if distance > 0 else "below"
        alerts.append(Alert(
            rule=rule,
            severity="warning",
            month=month,
            message=(f"{label} of {month} is {value:.3f}, {abs(distance):.3f} {direction} the mean "
                     f"{mean:.3f} of the {found.months} trailing months (allowed band {band:.3f})."),
            details={"metric": metric, "value": value, "trailing_mean": mean, "trailing_stdev": found.stdev,
                     "band": band, "trailing_months": found.months, "threshold_sigma": threshold_sigma,
                     "min_abs": min_abs, "version": version},
            dedup_key=_key(rule, month, f"v{version}" if version is not None else None),
        ))
    return alerts


def failed_checks(month: str | None, check_results: Sequence[Mapping[str, Any]]) -> list[Alert]:
    """One alert per check result that did not pass; severity follows the check's severity."""
    alerts = []
    for result in check_results:
        if result["passed"]:
            continue
        name = result["check_name"]
        description = result.get("description") or "no description"
        if month and description.startswith(f"{month}: "):  # check results name their month; said once here
            description = description[len(month) + 2:]
        version = result.get("version")
        alerts.append(Alert(
            rule=RULE_FAILED_CHECK,
            severity=_check_severity(result.get("severity")),
            month=month,
            message=f"Check {name} failed for {month}: {description.rstrip('.')}.",
            details={key: value for key, value in result.items() if key != "passed"},
            dedup_key=_key(RULE_FAILED_CHECK, month, name, f"v{version}" if version is not None else None),
        ))
    return alerts


def run_failures(
    failures: Sequence[Mapping[str, Any]],
    window_hours: float = 24,
    max_failures: int = 3,
    now: datetime | None = None,
) -> list[Alert]:
    """An error per failed run, plus one too_many_errors error when more than max_failures
    failed within the last window_hours.

    Each failure: {run_id, job_name?, month?, failed_at?, error?}. failed_at is a datetime
    (naive = UTC), ISO string or epoch seconds; a failure without it counts as recent.
    too_many_errors fires at most once per window-long UTC time bucket.
    """
    now = _as_utc(now) if now is not None else datetime.now(UTC)
    window = timedelta(hours=window_hours)
    alerts = []
    recent = []
    for failure in failures:
        run_id = str(failure["run_id"])
        job = failure.get("job_name") or "unknown job"
        month = failure.get("month")
        failed_at = _as_utc(failure["failed_at"]) if failure.get("failed_at") is not None else None
        error = failure.get("error") or "no error message"
        where = f" for {month}" if month else ""
        alerts.append(Alert(
            rule=RULE_RUN_FAILURE,
            severity="error",
            month=month,
            message=f"Run {run_id} of {job}{where} failed: {_first_line(error)}.",
            details={"run_id": run_id, "job_name": job, "failed_at": failed_at, "error": error},
            dedup_key=_key(RULE_RUN_FAILURE, run_id),
        ))
        if failed_at is None or now - window <= failed_at <= now:
            recent.append(run_id)
    if len(recent) > max_failures:
        bucket = math.floor(now.timestamp() / window.total_seconds())
        alerts.append(Alert(
            rule=RULE_TOO_MANY_ERRORS,
            severity="error",
            month=None,
            message=(f"{len(recent)} runs failed in the last {window_hours:g} hours, "
                     f"more than the {max_failures} allowed."),
            details={"failures": len(recent), "window_hours": window_hours,
                     "max_failures": max_failures, "run_ids": recent},
            dedup_key=_key(RULE_TOO_MANY_ERRORS, f"{window_hours:g}h", str(bucket)),
        ))
    return alerts


def stale_locks(locks: Sequence[Mapping[str, Any]], now: datetime | None = None) -> list[Alert]:
    """Warn about every lock still held after its expires_at (locks without one never expire)."""
    now = _as_utc(now) if now is not None else datetime.now(UTC)
    alerts = []
    for lock in locks:
        if lock.get("expires_at") is None or lock.get("released_at") is not None:
            continue
        expires_at = _as_utc(lock["expires_at"])
        if now <= expires_at:
            continue
        month, holder = lock["month"], lock.get("holder")
        overdue_hours = (now - expires_at).total_seconds() / 3600
        alerts.append(Alert(
            rule=RULE_STALE_LOCK,
            severity="warning",
            month=month,
            message=(f"The lock on {month} held by {holder} expired {overdue_hours:.1f} hours ago "
                     f"and was not released."),
            details={**_lock_details(lock), "overdue_hours": overdue_hours},
            dedup_key=_key(RULE_STALE_LOCK, month, holder, _iso(lock.get("acquired_at"))),
        ))
    return alerts


def unexpected_locks(
    locks: Sequence[Mapping[str, Any]], phases: Mapping[str, str]
) -> list[Alert]:
    """Warn about a temporary lock on a month that is finalized, or still open (never planned).

    A month missing from `phases` is open. Locks with kind "final" are ignored: a finalized
    month is expected to carry its final lock.
    """
    alerts = []
    for lock in locks:
        if lock.get("kind", "temporary") != "temporary" or lock.get("released_at") is not None:
            continue
        month, holder = lock["month"], lock.get("holder")
        phase = phases.get(month, "open")
        if phase not in PHASES_WITHOUT_TEMPORARY_LOCK:
            continue
        alerts.append(Alert(
            rule=RULE_UNEXPECTED_LOCK,
            severity="warning",
            month=month,
            message=f"{holder} holds a temporary lock on {month}, which is in phase {phase}.",
            details={**_lock_details(lock), "phase": phase},
            dedup_key=_key(RULE_UNEXPECTED_LOCK, month, holder, _iso(lock.get("acquired_at")), phase),
        ))
    return alerts


def unlock_alert(
    month: str, actor: str | None, approver: str, reason: str, at: datetime | None = None
) -> Alert:
    """The alert every audited unlock of a finalized month raises; `at` tells unlocks apart.

    The one rule that returns a single Alert, not a list: it always fires.
    """
    at = _as_utc(at) if at is not None else datetime.now(UTC)
    actor = actor or "an unknown actor"
    return Alert(
        rule=RULE_MONTH_UNLOCKED,
        severity="warning",
        month=month,
        message=f"{month} was unlocked by {actor}, approved by {approver}: {reason.rstrip('.')}.",
        details={"actor": actor, "approver": approver, "reason": reason, "at": at},
        dedup_key=_key(RULE_MONTH_UNLOCKED, month, actor, at.isoformat()),
        created_at=at,
    )


def _metric(metrics: Mapping[str, Any], name: str) -> float | None:
    value = metrics.get(name)
    if value is None and name == "unallocated_ratio" and metrics.get("requests"):
        # Older metric dicts carry only the counts.
        value = metrics.get("unallocated", 0) / metrics["requests"]
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _check_severity(severity: Any) -> str:
    # Dagster's AssetCheckSeverity values are "WARN" and "ERROR"; anything unknown is an error.
    return "warning" if str(severity or "").strip().lower() in {"warn", "warning"} else "error"


def _lock_details(lock: Mapping[str, Any]) -> dict[str, Any]:
    return {"holder": lock.get("holder"), "admins": list(lock.get("admins") or []),
            "acquired_at": lock.get("acquired_at"), "expires_at": lock.get("expires_at")}


def _as_utc(value: Any) -> datetime:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        # pandas Timestamps are datetimes; anything else is a caller bug.
        raise TypeError(f"expected a datetime, ISO string or epoch seconds, got {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: Any) -> str | None:
    return _as_utc(value).isoformat() if value is not None else None


def _first_line(text: str) -> str:
    lines = str(text).strip().splitlines() or [""]
    return lines[0].rstrip(".")


def _key(*parts: str | None) -> str:
    """Stable dedup key: the non-empty parts joined by ':'."""
    return ":".join(str(part) for part in parts if part is not None and part != "")
