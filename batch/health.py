"""A month's health at a glance: latest version figures, utilization, planned vs actual, trend."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batch.landing import landed_fingerprint
from batch.lifecycle import PHASE_FINALIZED
from batch.months import trailing_months
from batch.ports import ExportReads, HistoryPort, HistoryReads, MonthPort, OverviewPort, VersionPort

if TYPE_CHECKING:
    import pandas as pd

    from batch.inputs import InputError, InputTables

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


def planned_choice(store: MonthPort, exports: ExportReads, month: str) -> tuple[int, bool] | None:
    """(version, final) of the rows planning is judged by: the official copy's version of a finalized month,
    else the latest version; None without versions. Reads no rows."""
    # After an audited unlock the old official copy may remain on disk: the phase decides.
    final = exports.final_manifest(month) if store.month(month)["phase"] == PHASE_FINALIZED else None
    if final is not None:
        return int(final["version"]), True
    latest = exports.latest_version(month)
    return None if latest is None else (latest, False)


def planned_rows(store: MonthPort, exports: ExportReads, month: str, chosen: tuple[int, bool] | None = None) -> PlannedRows | None:
    """The official allocation of a finalized month, else its latest version; None without versions."""
    chosen = chosen or planned_choice(store, exports, month)
    return None if chosen is None else chosen_rows(exports, month, chosen)


def chosen_rows(exports: ExportReads, month: str, chosen: tuple[int, bool]) -> PlannedRows:
    """The rows of a planned_choice(): the official copy's, else the version's."""
    version, final = chosen
    return PlannedRows(month, version, final, exports.read_final(month) if final else exports.read_version(month, version))


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
    """JSON-able health of a month for `batch-admin status --json` (key "health"). The landing's summary and
    the version's figures are read where the run kept them (kept_landing, version_figures), else computed."""
    chosen = planned_choice(store, exports, month)
    landing, figures = landing_and_figures(exports, month, chosen)
    return health_of(store, month, chosen, landing["error"], figures)


def keep_figures(exports: ExportReads, month: str, chosen: tuple[int, bool]) -> None:
    """Compute and keep what readers of a new version ask first (the landing's summary, the version's figures):
    the run's export step calls it when it writes the version."""
    landing_and_figures(exports, month, chosen)


def landing_and_figures(exports: ExportReads, month: str,
                        chosen: tuple[int, bool] | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The landing's summary and the chosen version's figures (None without a version), kept or computed,
    the landed tables read at most once for both."""
    fingerprint = landed_fingerprint(exports.home, month)
    tables = landing_once(exports.home, month)
    landing = kept_landing(exports, month, fingerprint, tables)
    figures = (version_figures(exports, month, chosen, fingerprint, lambda: landed_or_problem(tables()))
               if chosen else None)
    return landing, figures


def landing_once(home, month: str) -> Callable[[], InputTables | InputError]:
    """read_landing of the month, read on the first call only: the summary and the figures share one read."""
    return functools.cache(lambda: read_landing(home, month))


def read_landing(home, month: str) -> InputTables | InputError:
    """The month's landed tables as load_landing reads them, or why they break the landing contract."""
    # Deferred, as every table reader of this module: pandas (0.4-0.6 s of `batch-admin status`, measured
    # with -X importtime) loads only when tables are read, never when the kept figures serve.
    from batch.inputs import InputError, load_landing

    try:
        return load_landing(home, month)
    except InputError as exc:
        return exc


def kept_landing(exports: ExportReads, month: str, fingerprint: str | None,
                 read: Callable[[], InputTables | InputError]) -> dict[str, Any]:
    """landing_summary of the month's landed files, kept under their fingerprint (landed_fingerprint)."""

    def summary() -> dict[str, Any]:
        from batch.inputs import landing_summary  # deferred: see read_landing

        return landing_summary(read())

    if fingerprint is None:  # the landing breaks the contract before a file is read: cheap to say again
        return summary()
    return exports.kept(f"landing/{month}/{fingerprint}", summary)


def version_figures(exports: ExportReads, month: str, chosen: tuple[int, bool], fingerprint: str | None,
                    landed: Callable[[], LandedTables]) -> dict[str, Any]:
    """planned_figures of the chosen rows against the landed tables, kept under the sha256 of the rows' file
    and the landed files' fingerprint: the run's export step computes them when it writes the version, and
    readers (the admin view, `status`) read them instead of 20,000 rows (60-120 ms)."""

    def compute() -> dict[str, Any]:
        return planned_figures(chosen_rows(exports, month, chosen), landed())

    digest = exports.rows_digest(month, chosen[0], chosen[1])
    if fingerprint is None or digest is None:
        return compute()
    return exports.kept(f"figures/{month}/{digest}-{fingerprint}", compute)


def planned_figures(planned: PlannedRows, landed: LandedTables) -> dict[str, Any]:
    """What a month's health computes from its planned rows and landed tables (the figures, utilization by
    service and region, planned vs actual): the same for the same version and the same landed files."""
    from batch.metrics import planned_vs_actual, utilization_table, version_metrics  # deferred: see read_landing

    found: dict[str, Any] = {"figures": {}, "utilization_by_service_region": [], "planned_vs_actual": None}
    if landed.resources is None:
        return found
    found["figures"] = version_metrics(planned.rows, landed.resources, landed.requests)
    found["utilization_by_service_region"] = _records(utilization_table(planned.rows, landed.resources,
                                                                        by="service_region"))
    if landed.actuals is not None:
        table = planned_vs_actual(planned.rows, landed.resources, landed.actuals)
        found["planned_vs_actual"] = {**actuals_summary(table), "by_resource": _records(table)}
    return found


def health_of(store: HistoryPort, month: str, chosen: tuple[int, bool] | None, problem: str | None,
              figures: dict[str, Any] | None) -> dict[str, Any]:
    """A month's health from its planned (version, final), the landing problem and planned_figures()."""
    health: dict[str, Any] = {
        "month": month,
        "phase": store.month(month)["phase"],
        "version": chosen[0] if chosen else None,
        "final": chosen[1] if chosen else False,
        "metrics": None,
        "utilization_by_service_region": [],
        "planned_vs_actual": None,
        "trend": trend(store, month),
        "problems": [problem] if problem else [],
    }
    if chosen is None or figures is None:
        return health
    merged = {**_stored_metrics(store, month, chosen[0]), **figures["figures"]}
    health["utilization_by_service_region"] = figures["utilization_by_service_region"]
    health["planned_vs_actual"] = figures["planned_vs_actual"]
    health["metrics"] = {key: _plain(merged.get(key)) for key in HEADLINE_FIELDS if key in merged}
    return health


def trend(store: HistoryReads, month: str, months: int = TREND_MONTHS) -> list[dict[str, Any]]:
    """The month and the ones before it (oldest first): figures of each month's final or latest version."""
    rows = []
    keys = [*reversed(trailing_months(month, months - 1)), month]
    known = store.history(keys)
    for key in keys:
        if key not in known:
            continue
        versions, final_version = known[key]["versions"], known[key]["final_version"]
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
    return landed_or_problem(read_landing(home, month))


def landed_or_problem(tables: InputTables | InputError) -> LandedTables:
    """LandedTables of what read_landing read: the tables, or the sentence saying why they cannot be read."""
    from batch.inputs import InputError  # deferred: see read_landing

    return LandedTables(problem=str(tables)) if isinstance(tables, InputError) else landed_of(tables)


def landed_of(tables: InputTables) -> LandedTables:
    """LandedTables of tables read by load_landing."""
    from solvers.eligibility import monthly_capacity  # deferred: see read_landing

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
    and the headline figures of the month's final (else latest) version (overview_line)."""
    rows = {row["month"]: row for row in store.months()}
    lines = []
    for month in sorted(set(rows) | set(exports.months())):
        lock = store.lock_info(month)
        alerts = store.alerts(month)
        lines.append(overview_line(rows.get(month) or store.month(month), store.versions(month),
                                   lock.holder if lock is not None else None, len(alerts),
                                   sum(1 for alert in alerts if alert["severity"] == "error")))
    return lines


def overview_line(row: dict[str, Any], versions: list[dict[str, Any]], lock_holder: str | None, alerts: int,
                  errors: int) -> dict[str, Any]:
    """A month's line of the overview from its control-store row, its versions (oldest first, each with its
    stored metrics), its lock's holder and its alert counts."""
    final_version = row.get("final_version") if row["phase"] == PHASE_FINALIZED else None
    chosen = next((v for v in versions if v["version"] == final_version), versions[-1] if versions else None)
    metrics = chosen["metrics"] if chosen else {}
    return {
        "month": row["month"], "phase": row["phase"], "versions": len(versions),
        "latest_version": versions[-1]["version"] if versions else None,
        "final_version": final_version, "lock": lock_holder, "alerts": alerts, "errors": errors,
        **{key: _plain(metrics.get(key)) for key in ("requests", "allocated", "success_rate", "utilization", "gap")},
    }
