"""A month's health at a glance: latest version figures, utilization, planned vs actual, trend."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from batch.inputs import InputError, load_landing
from batch.lifecycle import PHASE_FINALIZED
from batch.metrics import planned_vs_actual, utilization_table, version_metrics
from batch.months import trailing_months
from batch.ports import ExportReads, HistoryPort, MonthPort, OverviewPort, VersionPort
from solvers.eligibility import monthly_capacity

TREND_MONTHS = 6
TREND_FIELDS = ("success_rate", "unallocated_ratio", "utilization", "objective", "gap")
HEADLINE_FIELDS = ("requests", "allocated", "pinned", "unallocated", "excluded", "success_rate",
                   "unallocated_ratio", "unprocessed_by_reason", "requested_units", "allocated_units",
                   "capacity_units", "utilization", "objective", "bound", "gap", "status")


@dataclass(frozen=True)
class PlannedRows:
    """The allocation rows planning is judged by: the final version's, else the latest version's."""

    month: str
    version: int
    final: bool
    rows: pd.DataFrame


def planned_rows(store: MonthPort, exports: ExportReads, month: str) -> PlannedRows | None:
    """The official allocation of a finalized month, else its latest version; None without versions."""
    # After an audited unlock the old official copy may remain on disk: the phase decides.
    final = exports.final_manifest(month) if store.month(month)["phase"] == PHASE_FINALIZED else None
    if final is not None:
        return PlannedRows(month, int(final["version"]), True, exports.read_final(month))
    latest = exports.latest_version(month)
    if latest is None:
        return None
    return PlannedRows(month, latest, False, exports.read_version(month, latest))


def actuals_summary(table: pd.DataFrame) -> dict[str, Any]:
    """Totals of a planned_vs_actual table: units, utilization and delta, planned and actual."""
    capacity = float(table["capacity"].sum())
    planned = float(table["planned_units"].sum())
    landed = not table["actual_units"].isna().all()
    actual = float(table["actual_units"].fillna(0).sum()) if landed else None
    return {
        "actuals_landed": landed,
        "resources": len(table),
        "capacity_units": _number(capacity),
        "planned_units": _number(planned),
        "actual_units": _number(actual),
        "delta_units": _number(actual - planned) if actual is not None else None,
        "planned_utilization": planned / capacity if capacity else None,
        "actual_utilization": actual / capacity if capacity and actual is not None else None,
        "resources_over_plan": int((table["delta"] > 0).sum()) if landed else None,
        "resources_under_plan": int((table["delta"] < 0).sum()) if landed else None,
    }


def month_health(store: HistoryPort, exports: ExportReads, month: str) -> dict[str, Any]:
    """JSON-able health of a month for `batch-admin status --json` (key "health")."""
    state = store.month(month)
    planned = planned_rows(store, exports, month)
    landed = landed_tables(exports.home, month)
    resources, actuals, problem = landed.resources, landed.actuals, landed.problem
    health: dict[str, Any] = {
        "month": month,
        "phase": state["phase"],
        "version": planned.version if planned else None,
        "final": planned.final if planned else False,
        "metrics": None,
        "utilization_by_service_region": [],
        "planned_vs_actual": None,
        "trend": trend(store, month),
        "problems": [problem] if problem else [],
    }
    if planned is None:
        return health
    stored = _stored_metrics(store, month, planned.version)
    if resources is not None:
        figures = {**stored, **version_metrics(planned.rows, resources, landed.requests)}
        health["utilization_by_service_region"] = _records(
            utilization_table(planned.rows, resources, by="service_region"))
        if actuals is not None:
            table = planned_vs_actual(planned.rows, resources, actuals)
            health["planned_vs_actual"] = {**actuals_summary(table), "by_resource": _records(table)}
    else:
        figures = stored
    health["metrics"] = {key: _plain(figures.get(key)) for key in HEADLINE_FIELDS if key in figures}
    return health


def trend(store: HistoryPort, month: str, months: int = TREND_MONTHS) -> list[dict[str, Any]]:
    """The month and the ones before it (oldest first): figures of each month's final or latest version."""
    rows = []
    for key in [*reversed(trailing_months(month, months - 1)), month]:
        versions = store.versions(key)
        if not versions:
            continue
        final_version = store.month(key).get("final_version")
        chosen = next((v for v in versions if v["version"] == final_version), versions[-1])
        metrics = chosen["metrics"]
        rows.append({"month": key, "version": chosen["version"],
                     **{name: _plain(metrics.get(name)) for name in TREND_FIELDS}})
    return rows


@dataclass(frozen=True)
class LandedTables:
    """A month's resources (with the monthly capacity the solver used), requests and actuals as landed,
    or the sentence saying why they cannot be read."""

    resources: pd.DataFrame | None = None
    requests: pd.DataFrame | None = None
    actuals: pd.DataFrame | None = None
    problem: str | None = None


def landed_tables(home, month: str) -> LandedTables:
    """The month's landed tables, for figures that need capacity or requested units."""
    try:
        tables = load_landing(home, month)
    except InputError as exc:
        return LandedTables(problem=str(exc))
    # Utilization is judged against the monthly capacity the solver used: availability when present.
    resources = tables.resources.copy()
    resources["capacity"] = monthly_capacity(resources, tables.availability).reindex(
        resources["resource_id"]).to_numpy()
    return LandedTables(resources, tables.requests, tables.actuals)


def _stored_metrics(store: VersionPort, month: str, version: int) -> dict[str, Any]:
    for item in store.versions(month):
        if item["version"] == version:
            return dict(item["metrics"])
    return {}


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [{key: _plain(value) for key, value in record.items()} for record in table.to_dict("records")]


def _plain(value: Any) -> Any:
    """numpy scalars -> Python; NaN -> None, so the dict stays strict JSON."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _number(value: float | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


def months_overview(store: OverviewPort, exports: ExportReads) -> list[dict[str, Any]]:
    """One line per month known to the control store or the exports: phase, versions, final, lock, alerts,
    and the headline figures of the month's final (else latest) version."""
    rows = {row["month"]: row for row in store.months()}
    lines = []
    for month in sorted(set(rows) | set(exports.months())):
        row = rows.get(month) or store.month(month)
        versions = store.versions(month)
        final_version = row.get("final_version") if row["phase"] == PHASE_FINALIZED else None
        chosen = next((v for v in versions if v["version"] == final_version), versions[-1] if versions else None)
        metrics = chosen["metrics"] if chosen else {}
        lock = store.lock_info(month)
        alerts = store.alerts(month)
        lines.append({
            "month": month, "phase": row["phase"], "versions": len(versions),
            "latest_version": versions[-1]["version"] if versions else None,
            "final_version": final_version,
            "lock": lock.holder if lock is not None else None,
            "alerts": len(alerts),
            "errors": sum(1 for alert in alerts if alert["severity"] == "error"),
            **{key: _plain(metrics.get(key)) for key in ("requests", "allocated", "success_rate", "utilization",
                                                         "gap")},
        })
    return lines

