"""Monitoring figures of an allocation version: success rate, utilization, planned vs actual, trends."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from solvers.optimality import relative_gap as solver_relative_gap
from solvers.schema import STATUS_ALLOCATED, STATUS_EXCLUDED, STATUS_PINNED, STATUS_UNALLOCATED

try:  # `resource` is Unix-only; without it CPU of children and peak memory are unknown.
    import resource as _resource
except ImportError:  # pragma: no cover - Windows
    _resource = None  # type: ignore[assignment]

KNOWN_STATUSES = frozenset({STATUS_ALLOCATED, STATUS_UNALLOCATED, STATUS_PINNED, STATUS_EXCLUDED})
# Pinned rows are allocations fixed by admins: they count as allocated and consume capacity.
PLACED_STATUSES = frozenset({STATUS_ALLOCATED, STATUS_PINNED})

UNKNOWN_REASON = "unknown"
UTILIZATION_GROUPINGS: dict[str, list[str]] = {
    "resource": ["resource_id"],
    "service_region": ["service", "region"],
    "service": ["service"],
    "region": ["region"],
}


def counts(rows: pd.DataFrame) -> dict[str, Any]:
    """The one definition of a version's counts, shared by the CLI, the metadata and the exports.

    `allocated` includes `pinned` (a pin is an allocation an admin fixed): allocated + unallocated
    + excluded == requests, and success_rate = allocated / requests.
    """
    _check_statuses(rows)
    status = rows["status"].astype(object)
    requests = len(rows)
    allocated = int(status.isin(PLACED_STATUSES).sum())
    unallocated = int((status == STATUS_UNALLOCATED).sum())
    return {
        "requests": requests,
        "allocated": allocated,
        "pinned": int((status == STATUS_PINNED).sum()),
        "unallocated": unallocated,
        "excluded": int((status == STATUS_EXCLUDED).sum()),
        "success_rate": _ratio(allocated, requests),
        "unallocated_ratio": _ratio(unallocated, requests),
    }


def counts_by_reason(rows: pd.DataFrame) -> dict[str, int]:
    """Requests not allocated (unallocated or excluded) per reason, the largest first."""
    placed = rows["status"].astype(object).isin(PLACED_STATUSES)
    found = _count_by_reason(rows.loc[~placed])
    return dict(sorted(found.items(), key=lambda item: (-item[1], item[0])))


def relative_gap(objective: float | None, bound: float | None) -> float | None:
    """The one definition of the gap: (bound - objective) / max(1, |bound|), the solver's own."""
    if objective is None or bound is None:
        return None
    gap = solver_relative_gap(float(objective), float(bound))
    return gap if math.isfinite(gap) else None


def version_metrics(rows: pd.DataFrame, resources: pd.DataFrame,
                    requests: pd.DataFrame | None = None) -> dict[str, Any]:
    """Headline figures of one version as a JSON-able dict (plain ints, floats, None, str).

    requested_units come from `requests` (the rows carry 0 units when a request is not
    allocated); without it they are unknown (None) rather than wrong.
    """
    figures = counts(rows)
    placed = rows["status"].astype(object).isin(PLACED_STATUSES)
    allocated_units = int(_units(rows.loc[placed]).sum())
    capacity_units = int(_capacity(resources).sum())
    return {
        "month": _single_value(rows, "month"),
        "version": _single_value(rows, "version"),
        **figures,
        "unprocessed_by_reason": _count_by_reason(rows.loc[~placed]),
        "requested_units": int(_units(requests).sum()) if requests is not None else None,
        "allocated_units": allocated_units,
        "capacity_units": capacity_units,
        "utilization": _ratio(allocated_units, capacity_units),
        "by_priority": _by_priority(rows),
    }


def utilization_table(rows: pd.DataFrame, resources: pd.DataFrame, by: str = "resource") -> pd.DataFrame:
    """Planned units against capacity, per resource, service and region, service, or region."""
    if by not in UTILIZATION_GROUPINGS:
        raise ValueError(f"by must be one of {sorted(UTILIZATION_GROUPINGS)}, got {by!r}")
    per_resource = _per_resource_planned(rows, resources)
    if by == "resource":
        table = per_resource
    else:
        keys = UTILIZATION_GROUPINGS[by]
        table = (
            per_resource.groupby(keys, dropna=False, sort=True)
            .agg(resources=("resource_id", "size"), capacity=("capacity", "sum"),
                 planned_units=("planned_units", "sum"))
            .reset_index()
        )
    table = table.assign(utilization=_safe_divide(table["planned_units"], table["capacity"]))
    table["over_capacity"] = table["planned_units"] > table["capacity"]
    return table.reset_index(drop=True)


def utilization_records(rows: pd.DataFrame, resources: pd.DataFrame, by: str = "service_region") -> list[dict[str, Any]]:
    """utilization_table() as JSON-able records (NaN -> None), for manifests and status --json."""
    table = utilization_table(rows, resources, by=by)
    return [{key: (None if isinstance(value, float) and not math.isfinite(value) else _plain(value))
             for key, value in record.items()} for record in table.to_dict("records")]


def planned_vs_actual(
    rows: pd.DataFrame, resources: pd.DataFrame, actuals: pd.DataFrame | None
) -> pd.DataFrame:
    """Per resource: planned and actual units and utilization; delta = actual - planned units.

    `actuals=None` means they have not landed: the actual columns are then NaN.
    """
    table = _per_resource_planned(rows, resources)
    if actuals is None:
        table["actual_units"] = math.nan
    else:
        actual = (
            actuals.assign(actual_units=pd.to_numeric(actuals["actual_units"]).fillna(0))
            .groupby("resource_id", sort=True)["actual_units"].sum()
        )
        # Actuals on a resource absent from the plan and the resources table still show up.
        missing = actual.index.difference(pd.Index(table["resource_id"]))
        if len(missing):
            extra = pd.DataFrame({"resource_id": list(missing), "name": None, "service": None,
                                  "region": None, "capacity": 0, "planned_units": 0})
            table = pd.concat([table, extra], ignore_index=True)
        actual_units = table["resource_id"].map(actual).fillna(0).astype("float64")
        # Units are integers by contract; keep fractional actuals rather than truncate them.
        integral = bool((actual_units == actual_units.round()).all())
        table["actual_units"] = actual_units.astype("int64") if integral else actual_units
    table["planned_utilization"] = _safe_divide(table["planned_units"], table["capacity"])
    table["actual_utilization"] = _safe_divide(table["actual_units"], table["capacity"])
    table["delta"] = table["actual_units"] - table["planned_units"]
    return table.sort_values("resource_id", kind="stable").reset_index(drop=True)


def trend_table(history: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per month (and version, when given) of scalar metrics, sorted by month."""
    if not history:
        return pd.DataFrame({"month": pd.Series(dtype=object)})
    records = [{key: value for key, value in entry.items() if _is_scalar(value)} for entry in history]
    if any("month" not in record for record in records):
        raise ValueError("every history entry needs a 'month'")
    table = pd.DataFrame.from_records(records)
    sort_keys = ["month", "version"] if "version" in table.columns else ["month"]
    table = table.sort_values(sort_keys, kind="stable").reset_index(drop=True)
    return table[["month", *[column for column in table.columns if column != "month"]]]


class ResourceUsage:
    """Records wall time, CPU time and peak memory of named phases."""

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, Any]] = {}

    @contextmanager
    def measure(self, phase: str = "total") -> Iterator[dict[str, Any]]:
        """Measure the body; the yielded dict is filled in when the body ends (even on error).

        peak_rss_mb is the process high-water mark so far (self or waited-for children),
        not the peak of this phase alone: ru_maxrss never goes down.
        """
        usage: dict[str, Any] = {"phase": phase}
        wall_start = time.perf_counter()
        cpu_start = time.process_time()
        children_start = _children_cpu_seconds()
        try:
            yield usage
        finally:
            usage["wall_seconds"] = time.perf_counter() - wall_start
            usage["cpu_seconds"] = (time.process_time() - cpu_start) + (
                _children_cpu_seconds() - children_start)
            usage["peak_rss_mb"] = peak_rss_mb()
            self.phases[phase] = usage

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """All measured phases, keyed by phase name."""
        return {phase: dict(usage) for phase, usage in self.phases.items()}


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process or its waited-for children, in MiB (None if unknown)."""
    if _resource is None:
        return None
    peak = max(_resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss,
               _resource.getrusage(_resource.RUSAGE_CHILDREN).ru_maxrss)
    # Linux reports KiB, macOS bytes.
    divisor = 1024 * 1024 if sys.platform == "darwin" else 1024
    return peak / divisor


def _children_cpu_seconds() -> float:
    if _resource is None:
        return 0.0
    children = _resource.getrusage(_resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


def _check_statuses(rows: pd.DataFrame) -> None:
    unknown = set(rows["status"].dropna().astype(str).unique()) - KNOWN_STATUSES  # unique(): not 20,000 Python objects
    if unknown or rows["status"].isna().any():
        raise ValueError(f"unknown allocation status(es): {sorted(unknown) or ['<missing>']}")


def _units(rows: pd.DataFrame) -> pd.Series:
    return pd.to_numeric(rows["units"]).fillna(0)


def _capacity(resources: pd.DataFrame) -> pd.Series:
    # The landing table names it capacity_units; the solver schema names it capacity.
    column = "capacity" if "capacity" in resources.columns else "capacity_units"
    return pd.to_numeric(resources[column]).fillna(0)


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator) / float(denominator) if denominator else None


def _safe_divide(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """Element-wise ratio as float; NaN where the denominator is 0 (utilization undefined)."""
    denominator = denominator.astype("float64")
    return numerator.astype("float64") / denominator.where(denominator != 0)


def _single_value(rows: pd.DataFrame, column: str) -> Any:
    if column not in rows.columns:
        return None
    values = rows[column].dropna().unique()
    return _plain(values[0]) if len(values) == 1 else None


def _plain(value: Any) -> Any:
    """numpy/pandas scalars -> Python scalars so the dict stays JSON-able."""
    return value.item() if hasattr(value, "item") else value


def _count_by_reason(rows: pd.DataFrame) -> dict[str, int]:
    if rows.empty:
        return {}
    reasons = rows["reason"].astype(object).where(rows["reason"].notna(), None)
    # Excluded rows without a reason are still excluded; anything else is unknown.
    fallback = pd.Series(np.where(rows["status"].astype(object) == STATUS_EXCLUDED, STATUS_EXCLUDED, UNKNOWN_REASON),
                         index=rows.index, dtype=object)
    reasons = reasons.where(reasons.notna() & (reasons != ""), fallback)
    counts = reasons.value_counts()
    return {str(reason): int(counts[reason]) for reason in sorted(counts.index)}


def _by_priority(rows: pd.DataFrame) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if rows.empty:
        return out
    status = rows["status"].astype(object)
    # One grouping of three flags, not a pass over the rows per priority.
    flags = pd.DataFrame({"allocated": status.isin(PLACED_STATUSES), "unallocated": status == STATUS_UNALLOCATED,
                          "excluded": status == STATUS_EXCLUDED}, index=rows.index)
    grouped = flags.groupby(rows["priority"], sort=True)
    sums, sizes = grouped.sum(), grouped.size()
    for priority in sums.index:
        total, allocated = int(sizes[priority]), int(sums.at[priority, "allocated"])
        out[str(_plain(priority))] = {
            "requests": total,
            "allocated": allocated,
            "unallocated": int(sums.at[priority, "unallocated"]),
            "excluded": int(sums.at[priority, "excluded"]),
            "success_rate": _ratio(allocated, total),
        }
    return out


def _per_resource_planned(rows: pd.DataFrame, resources: pd.DataFrame) -> pd.DataFrame:
    """resource_id, name, service, region, capacity, planned_units for every resource.

    Resources without allocations have planned_units 0; allocations on a resource missing
    from `resources` show up with capacity 0 (and so over capacity) rather than vanish.
    """
    base = pd.DataFrame({
        "resource_id": resources["resource_id"].astype(object),
        "name": resources["name"].astype(object) if "name" in resources else None,
        "service": resources["service"].astype(object),
        "region": resources["region"].astype(object),
        "capacity": _capacity(resources).astype("int64"),
    })
    placed = rows.loc[rows["status"].astype(object).isin(PLACED_STATUSES) & rows["resource_id"].notna()]
    placed = placed.assign(resource_id=placed["resource_id"].astype(object), units=_units(placed))
    planned = placed.groupby("resource_id", sort=True)["units"].sum()
    unknown = placed.loc[~placed["resource_id"].isin(base["resource_id"])]
    if not unknown.empty:
        extra = (unknown.groupby("resource_id", sort=True)[["service", "region"]].first().reset_index()
                 .assign(name=None, capacity=0))
        extra = extra.astype({"resource_id": object, "service": object, "region": object})
        base = pd.concat([base, extra[base.columns]], ignore_index=True)
    base["planned_units"] = base["resource_id"].map(planned).fillna(0).astype("int64")
    return base.sort_values("resource_id", kind="stable").reset_index(drop=True)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool)) or hasattr(value, "item")
