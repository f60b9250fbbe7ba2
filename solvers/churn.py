"""Churn of a re-run: how much of the previous version's allocation a new allocation moves."""

from __future__ import annotations

import pandas as pd


def churn(
    previous: dict[str, str], allocations: pd.DataFrame, previous_units: dict[str, int] | None = None
) -> dict[str, float]:
    """Requests and units moved relative to `previous` (request_id -> resource_id of the previous version).

    A request moved when the previous version gave it a resource and `allocations` (one row per
    request, ALLOCATION_COLUMNS) gives it another one or none. Returns:
    previous_allocated (requests that held a resource before), requests_moved (of those: now
    elsewhere or nowhere), requests_reassigned (now elsewhere), requests_dropped (now nowhere),
    requests_added (allocated now, without a previous resource), units_moved (the units of the
    moved requests: their new units where reassigned, their previous units from
    `previous_units` where dropped, 0 when unknown), moved_share (requests_moved /
    previous_allocated, 0 without a previous version). Whole-table operations, no Python loop.
    """
    held = pd.Series(previous, dtype=object).dropna()
    table = allocations[["request_id", "resource_id", "units"]].drop_duplicates("request_id")
    now = table.set_index("request_id")
    current = now["resource_id"].reindex(held.index)
    before = held.astype(str)
    has_now = current.notna()
    reassigned = has_now & (current.astype(object).where(has_now, "").astype(str) != before)
    dropped = ~has_now
    added = now["resource_id"].notna() & ~now.index.isin(held.index)
    units_now = now["units"].reindex(held.index).fillna(0)
    units_before = pd.Series(previous_units or {}, dtype="float64").reindex(held.index).fillna(0)
    units_moved = float(units_now[reassigned].sum() + units_before[dropped].sum())
    moved = int(reassigned.sum() + dropped.sum())
    return {
        "previous_allocated": int(len(held)),
        "requests_moved": moved,
        "requests_reassigned": int(reassigned.sum()),
        "requests_dropped": int(dropped.sum()),
        "requests_added": int(added.sum()),
        "units_moved": units_moved,
        "moved_share": moved / len(held) if len(held) else 0.0,
    }
