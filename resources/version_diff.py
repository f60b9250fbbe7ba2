"""The comparison of two versions of a month: allocations added, removed and moved, and every metric's change.

This module imports nothing from Dagster.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from batch import metrics as figures
from resources.export_paths import check_month
from resources.version_store import VersionStore


def compare_versions(store: VersionStore, month: str, from_version: int, to_version: int) -> dict:
    """Compare two complete versions of a month (ExportStore.diff writes the result beside them)."""
    month = check_month(month)
    before = store.read_version(month, from_version)
    after = store.read_version(month, to_version)
    old = _allocated_map(before)
    new = _allocated_map(after)
    added = [{"request_id": r, "resource_id": new[r]} for r in sorted(new.keys() - old.keys())]
    removed = [{"request_id": r, "resource_id": old[r]} for r in sorted(old.keys() - new.keys())]
    moved = [
        {"request_id": r, "from_resource": old[r], "to_resource": new[r]}
        for r in sorted(old.keys() & new.keys())
        if old[r] != new[r]
    ]
    from_metrics = {**_manifest_figures(store.manifest(month, from_version)), **_row_metrics(before)}
    to_metrics = {**_manifest_figures(store.manifest(month, to_version)), **_row_metrics(after)}
    metrics = {}
    for name in sorted(from_metrics.keys() | to_metrics.keys()):
        a, b = from_metrics.get(name), to_metrics.get(name)
        change = None if a is None or b is None else _tidy_number(b - a)
        metrics[name] = {"from": a, "to": b, "change": change}
    return {
        "month": month,
        "from": int(from_version),
        "to": int(to_version),
        "added": added,
        "removed": removed,
        "moved": moved,
        "counts": {
            "added": len(added),
            "removed": len(removed),
            "moved": len(moved),
            "unchanged": sum(1 for r in old.keys() & new.keys() if old[r] == new[r]),
        },
        "metrics": metrics,
    }


def _allocated_map(rows: pd.DataFrame) -> dict[str, str]:
    """request_id -> resource_id of the rows that hold a resource (allocated or pinned)."""
    allocated = rows[rows["resource_id"].notna()]
    return dict(zip(allocated["request_id"].tolist(), allocated["resource_id"].tolist()))


def _row_metrics(rows: pd.DataFrame) -> dict[str, float]:
    """Counts computed from the rows themselves (batch.metrics.counts), comparable between any two versions."""
    allocated = rows["resource_id"].notna()
    found = {k: v for k, v in figures.counts(rows).items() if v is not None}
    return {**found, "allocated_units": int(rows.loc[allocated, "units"].sum()),
            "cost_total": int(rows.loc[allocated, "cost"].sum())}


def _manifest_figures(manifest: dict) -> dict[str, float]:
    """A manifest's numeric metrics and the solver's objective, bound and gap (the gap as batch.metrics defines it)."""
    solver = manifest.get("solver")
    solver = solver if isinstance(solver, dict) else {}
    found = _numeric_metrics({k: solver.get(k) for k in ("objective", "bound")})
    gap = figures.relative_gap(found.get("objective"), found.get("bound"))
    if gap is not None:
        found["gap"] = gap
    return {**found, **_numeric_metrics(manifest.get("metrics"))}


def _numeric_metrics(metrics: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a manifest's metrics, nested names joined with dots."""
    found: dict[str, float] = {}
    if not isinstance(metrics, dict):
        return found
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            found.update(_numeric_metrics(value, prefix=f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            found[name] = value
    return found


def _tidy_number(value: float) -> float:
    return round(value, 9) if isinstance(value, float) else value
