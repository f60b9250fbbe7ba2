"""What each sheet of an XLSX export says, computed from the (possibly filtered) rows only; no xlsxwriter."""

from __future__ import annotations

from typing import Any

import pandas as pd

from batch import formats as figure_formats
from batch import metrics as figures
from resources.export_filters import Filters

PRIORITIES = (1, 2, 3, 4, 5)
UNALLOCATED_COLUMNS = ["request_id", "customer_id", "service", "region", "priority", "requested_units", "status",
                       "reason", "reason_detail"]


def placed(frame: pd.DataFrame) -> pd.Series:
    """Rows that hold a resource (allocated or pinned)."""
    return frame["status"].astype(object).isin(figures.PLACED_STATUSES)


def capacity_groups(manifest: dict, filters: Filters) -> pd.DataFrame:
    """Capacity per service and region in the filter's scope (from the manifest: rows do not know capacity).

    Empty when filtered by resource: a resource's capacity is not in the manifest."""
    metrics = manifest.get("metrics")
    records = (metrics.get("utilization_by_service_region") if isinstance(metrics, dict) else None) or []
    table = pd.DataFrame.from_records(records, columns=["service", "region", "capacity"]) if records else \
        pd.DataFrame(columns=["service", "region", "capacity"])
    if "resource" in filters.values:
        return table.iloc[0:0]
    for name in ("service", "region"):
        if name in filters.values:
            table = table[table[name] == filters.values[name]]
    return table[["service", "region", "capacity"]]


def key_figures(frame: pd.DataFrame, manifest: dict, filters: Filters) -> list[tuple[str, str, Any]]:
    """(name, label, value) of the summary's figures, all of the rows in the workbook.

    The solver's objective, bound and gap describe the whole version: shown only when nothing is filtered."""
    capacity = capacity_groups(manifest, filters)
    allocated_units = int(frame.loc[placed(frame), "units"].sum())
    found: dict[str, Any] = {**figures.counts(frame), "allocated_units": allocated_units}
    requested = frame["requested_units"]
    if len(frame) and requested.notna().all():
        found["requested_units"] = int(requested.sum())
    elif not filters:  # a version written before schema 2: the manifest's figure, of the whole version
        found["requested_units"] = (manifest.get("metrics") or {}).get("requested_units")
    if len(capacity):
        found["capacity_units"] = int(capacity["capacity"].sum())
        found["utilization"] = allocated_units / found["capacity_units"] if found["capacity_units"] else None
    if not filters:
        solver = manifest.get("solver")
        solver = solver if isinstance(solver, dict) else {}
        found.update({k: solver.get(k) for k in ("objective", "bound")})
        found["gap"] = figures.relative_gap(solver.get("objective"), solver.get("bound"))
    return [(key, label, found[key]) for key, label in figure_formats.HEADLINE
            if isinstance(found.get(key), int | float) and not isinstance(found.get(key), bool)]


def utilization(frame: pd.DataFrame, manifest: dict, filters: Filters) -> pd.DataFrame:
    """Per service and region: requests and what became of them, units asked and given, capacity, utilization."""
    keyed = frame.assign(
        allocated=placed(frame).astype("int64"),
        unallocated=(frame["status"] == "unallocated").astype("int64"),
        excluded=(frame["status"] == "excluded").astype("int64"),
        allocated_units=frame["units"].where(placed(frame), 0),
    )
    table = keyed.groupby(["service", "region"], as_index=False).agg(
        requests=("request_id", "count"), allocated=("allocated", "sum"), unallocated=("unallocated", "sum"),
        excluded=("excluded", "sum"), requested_units=("requested_units", "sum"),
        allocated_units=("allocated_units", "sum"))
    capacity = capacity_groups(manifest, filters)
    if not filters.values.keys() - {"service", "region"}:
        # Groups with capacity but no rows in scope are part of the picture too (idle capacity).
        table = table.merge(capacity, on=["service", "region"], how="outer")
    else:
        table = table.merge(capacity, on=["service", "region"], how="left")
    counts = ["requests", "allocated", "unallocated", "excluded", "requested_units", "allocated_units"]
    table[counts] = table[counts].fillna(0).astype("int64")
    table["success_rate"] = table["allocated"] / table["requests"].where(table["requests"] != 0)
    table["utilization"] = table["allocated_units"] / table["capacity"].where(table["capacity"] != 0)
    return table.sort_values(["service", "region"])[
        ["service", "region", "requests", "allocated", "unallocated", "excluded", "success_rate",
         "requested_units", "allocated_units", "capacity", "utilization"]].reset_index(drop=True)


def reasons(frame: pd.DataFrame) -> pd.DataFrame:
    """Per reason of the rows not allocated: requests, share of the rows, units asked, per priority, an example."""
    left = frame[~placed(frame)]
    columns = ["reason", "requests", "share_of_rows", "requested_units",
               *(f"priority_{p}" for p in PRIORITIES), "example"]
    if left.empty:
        return pd.DataFrame(columns=columns)
    records = []
    for reason, count in figures.counts_by_reason(frame).items():
        rows = left[left["reason"].fillna(figures.UNKNOWN_REASON) == reason]
        details = rows["reason_detail"].dropna()
        records.append({
            "reason": reason.replace("_", " "), "requests": count, "share_of_rows": count / len(frame),
            "requested_units": int(rows["requested_units"].fillna(0).sum()),
            **{f"priority_{p}": int((rows["priority"] == p).sum()) for p in PRIORITIES},
            "example": f"{rows['request_id'].iloc[0]}: {details.iloc[0]}" if len(details) else ""})
    return pd.DataFrame.from_records(records, columns=columns)


def per_resource(frame: pd.DataFrame) -> pd.DataFrame:
    """Per resource that holds rows: requests, units given and asked, cost."""
    return (frame[placed(frame)]
            .groupby(["resource_id", "service", "region"], as_index=False)
            .agg(requests=("request_id", "count"), units=("units", "sum"),
                 requested_units=("requested_units", "sum"), cost=("cost", "sum"))
            .sort_values("resource_id").reset_index(drop=True))


def unallocated(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows not allocated, with their reasons."""
    return frame.loc[~placed(frame), UNALLOCATED_COLUMNS]


def scope_sentence(filters: Filters, rows: int, version_rows: int) -> str:
    """What the workbook holds, in words: the first lines of the summary (one sentence a line)."""
    if not filters:
        return f"All {version_rows:,} rows of the version; every sheet describes them."
    return (f"Filtered: {filters.in_words()}: {rows:,} of {version_rows:,} rows.\nEvery sheet describes these rows "
            f"only; the solver's objective, bound and gap (whole version) are left out.")
