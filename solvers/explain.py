"""The allocation table: one row per request with its status and a true, specific reason."""

from __future__ import annotations

import numpy as np
import pandas as pd

from solvers.compiled import NO_PAIR, CompiledInstance
from solvers.schema import (
    ALLOCATION_COLUMNS,
    DETAIL_COLUMN,
    REASON_CAPACITY_EXHAUSTED,
    REASON_COST_EXCEEDS_VALUE,
    REASON_EXCLUDED,
    REASON_NO_ELIGIBLE_RESOURCE,
    REASON_PIN_CONFLICT,
    REASON_WINDOW_UNAVAILABLE,
    STATUS_ALLOCATED,
    STATUS_EXCLUDED,
    STATUS_PINNED,
    STATUS_UNALLOCATED,
    AllocationInstance,
)

# How many full resources an unallocated request's detail names.
DETAIL_RESOURCES = 3


def allocation_table(instance: AllocationInstance, c: CompiledInstance, assign: np.ndarray) -> pd.DataFrame:
    """ALLOCATION_COLUMNS plus DETAIL_COLUMN, in the order of instance.requests."""
    n = c.num_requests
    allocated = assign != NO_PAIR
    chosen = np.where(allocated, assign, 0)
    resource = np.where(allocated, c.resource_ids[c.pair_resource[chosen]] if c.num_pairs else None, None)
    units = np.where(allocated, c.pair_units[chosen] if c.num_pairs else 0, 0)
    cost = np.where(allocated, c.pair_cost[chosen] if c.num_pairs else 0, 0)
    status = np.full(n, STATUS_UNALLOCATED, dtype=object)
    status[allocated] = STATUS_ALLOCATED
    status[allocated & (assign == c.pinned_pair)] = STATUS_PINNED
    status[c.excluded] = STATUS_EXCLUDED
    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    reason[c.excluded] = REASON_EXCLUDED
    reason[c.pin_dropped] = REASON_PIN_CONFLICT
    pin_messages = {m.split(" ", 2)[1]: m for m in c.conflicts}
    for i in np.flatnonzero(c.pin_dropped).tolist():
        detail[i] = pin_messages.get(c.request_ids[i])

    no_pairs = np.diff(c.pair_request_start) == 0
    open_rows = ~allocated & ~c.excluded & ~c.pin_dropped
    blocked = np.isin(c.request_ids, list(instance.window_blocked)) if instance.window_blocked else np.zeros(n, bool)
    reason[open_rows & no_pairs & blocked] = REASON_WINDOW_UNAVAILABLE
    reason[open_rows & no_pairs & ~blocked] = REASON_NO_ELIGIBLE_RESOURCE
    detail[open_rows & no_pairs & blocked] = "no availability inside the request's date window"

    room = (c.capacity - c.load(assign)).tolist()
    starts = c.pair_request_start.tolist()
    pair_resource, pair_units, pair_value = (
        c.pair_resource.tolist(), c.pair_units.tolist(), c.pair_value.tolist()
    )
    capacity = c.capacity.tolist()
    resource_ids = c.resource_ids
    # Which priorities filled each resource: the "with what priority" of a capacity_exhausted reason.
    priority = instance.requests["priority"].to_numpy(dtype=np.int64)
    filled_by = c.pair_resource[assign[allocated]] if c.num_pairs else np.array([], dtype=np.int64)
    lowest_priority = np.full(len(capacity), 99, dtype=np.int64)
    highest_priority = np.zeros(len(capacity), dtype=np.int64)
    np.minimum.at(lowest_priority, filled_by, priority[allocated])
    np.maximum.at(highest_priority, filled_by, priority[allocated])
    lowest, highest = lowest_priority.tolist(), highest_priority.tolist()
    for i in np.flatnonzero(open_rows & ~no_pairs).tolist():
        full = []
        for p in range(starts[i], starts[i + 1]):
            r = pair_resource[p]
            if room[r] < pair_units[p]:
                held = (f"priority {lowest[r]}" if lowest[r] == highest[r] else
                        f"priorities {lowest[r]}-{highest[r]}") if highest[r] else "nothing"
                full.append(
                    f"{resource_ids[r]} ({room[r]} of {capacity[r]} units left, needs {pair_units[p]}; "
                    f"filled with {held})"
                )
        if len(full) == starts[i + 1] - starts[i]:
            reason[i] = REASON_CAPACITY_EXHAUSTED
            more = len(full) - DETAIL_RESOURCES
            detail[i] = "eligible resources full: " + ", ".join(full[:DETAIL_RESOURCES]) + (
                f" and {more} more" if more > 0 else ""
            )
        else:
            reason[i] = REASON_COST_EXCEEDS_VALUE
            best = max(pair_value[p] for p in range(starts[i], starts[i + 1]))
            detail[i] = f"a resource has room but the best pair adds {best} to the objective"
    table = pd.DataFrame(
        {
            "request_id": pd.Series(c.request_ids, dtype=object),
            # object columns keep None (not NaN) for "no resource" / "no reason".
            "resource_id": pd.Series(resource, dtype=object),
            "units": units.astype(np.int64),
            "cost": cost.astype(np.int64),
            "status": pd.Series(status, dtype=object),
            "reason": pd.Series(reason, dtype=object),
            DETAIL_COLUMN: pd.Series(detail, dtype=object),
        }
    )
    return table[ALLOCATION_COLUMNS + [DETAIL_COLUMN]]
