"""Capacity advice of a plan or a version: computed by solvers/advice.py, told in words, kept in manifests."""

from __future__ import annotations

from typing import Any

import pandas as pd

from solvers.advice import AdviceError, CapacityAdvice, capacity_advice, sentence
from solvers.schema import AllocationInstance, SolverParams

# Columns of a place kept in a manifest (the full tables are the version's advice Parquet files).
PLACE_FIELDS = ["resource_id", "service", "region", "capacity", "used_units", "shadow_price", "holds_for_units",
                "value_over_range", "expected_gain", "unallocated_requests", "unallocated_value"]
GROUP_FIELDS = ["service", "region", "capacity", "shadow_price", "best_resource_id", "unallocated_requests",
                "unallocated_value"]
# Groups named in the "most value waiting" line.
TOP_GROUPS = 3
IDLE_FIELDS = ["resource_id", "service", "region", "capacity", "used_units", "idle_units"]


def month_advice(instance: AllocationInstance, params: SolverParams, allocations: pd.DataFrame,
                 time_limit_s: float = 600.0) -> CapacityAdvice | None:
    """The advice, or None when its LP could not be solved in time (the run goes on without it)."""
    try:
        return capacity_advice(instance, params, allocations, time_limit_s)
    except AdviceError:
        return None


def advice_record(advice: CapacityAdvice | None) -> dict[str, Any]:
    """The JSON-able advice kept with a version or a plan: top places with their sentence, idle resources."""
    if advice is None:
        return {"available": False}
    top = advice.top()
    return {
        "available": True, "lp_bound": round(advice.lp_bound, 2), "seconds": round(advice.seconds, 3),
        "top": [{**{key: _plain(row[key]) for key in PLACE_FIELDS}, "sentence": sentence(row)}
                for row in top.to_dict("records")],
        "idle": [{key: _plain(row[key]) for key in IDLE_FIELDS} for row in advice.idle().to_dict("records")],
        "groups_priced": int((advice.groups["shadow_price"] > 0).sum()),
        # The groups where most value waits for capacity: what more capacity there could serve at most.
        "groups": [{key: _plain(row[key]) for key in GROUP_FIELDS} for row in advice.groups.sort_values(
            ["unallocated_value", "service", "region"], ascending=[False, True, True]).head(TOP_GROUPS)
            .to_dict("records") if row["unallocated_value"] > 0],
    }


def advice_frames(record: dict[str, Any] | None) -> dict[str, pd.DataFrame]:
    """The advice's tables (top places, idle resources) as DataFrames, for the report and the workbook."""
    if not record or not record.get("available"):
        return {}
    return {"top": pd.DataFrame(record.get("top") or [], columns=[*PLACE_FIELDS, "sentence"]),
            "idle": pd.DataFrame(record.get("idle") or [], columns=IDLE_FIELDS)}


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers (JSON)."""
    return value.item() if hasattr(value, "item") else value
