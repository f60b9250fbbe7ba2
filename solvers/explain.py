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

    _explain_unallocated(instance, c, assign, np.flatnonzero(open_rows & ~no_pairs), reason, detail)
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


def _explain_unallocated(
    instance: AllocationInstance, c: CompiledInstance, assign: np.ndarray, rows: np.ndarray,
    reason: np.ndarray, detail: np.ndarray,
) -> None:
    """Reason and detail of the unallocated requests `rows` (each with pairs), in whole-array steps:
    capacity_exhausted when none of its pairs fits in its resource's room (naming the first
    DETAIL_RESOURCES of them, their room and the priorities that filled them), else
    cost_exceeds_value (with its best pair's value). Only the sentences are built per request."""
    if len(rows) == 0:
        return
    room = c.capacity - c.load(assign)
    sizes = c.pair_request_start[rows + 1] - c.pair_request_start[rows]
    group_start = np.cumsum(sizes) - sizes
    rank = np.arange(int(sizes.sum())) - np.repeat(group_start, sizes)  # a pair's place among its request's
    pairs = np.repeat(c.pair_request_start[rows], sizes) + rank
    resource = c.pair_resource[pairs]
    full = room[resource] < c.pair_units[pairs]
    exhausted = np.add.reduceat(full.astype(np.int64), group_start) == sizes
    reason[rows[exhausted]] = REASON_CAPACITY_EXHAUSTED
    reason[rows[~exhausted]] = REASON_COST_EXCEEDS_VALUE
    detail[rows[~exhausted]] = _cost_sentences(c, rows[~exhausted], pairs, full, room,
                                               np.flatnonzero(~exhausted), group_start, sizes)
    if not exhausted.any():
        return
    # Which priorities filled each resource: the "with what priority" of a capacity_exhausted reason.
    allocated = assign != NO_PAIR
    priority = instance.requests["priority"].to_numpy(dtype=np.int64)
    filled_by = c.pair_resource[assign[allocated]]
    lowest = np.full(len(c.capacity), 99, dtype=np.int64)
    highest = np.zeros(len(c.capacity), dtype=np.int64)
    np.minimum.at(lowest, filled_by, priority[allocated])
    np.maximum.at(highest, filled_by, priority[allocated])
    # Every pair of an exhausted request is full: name its first DETAIL_RESOURCES pairs.
    named = np.repeat(exhausted, sizes) & (rank < DETAIL_RESOURCES)
    r = resource[named]
    # Each named resource's words before and after the units the request needs: once per resource.
    shown = np.unique(r)
    before, after = np.empty(len(c.capacity), dtype=object), np.empty(len(c.capacity), dtype=object)
    before[shown] = [f"{rid} ({left} of {cap} units left, needs " for rid, left, cap in
                     zip(c.resource_ids[shown].tolist(), room[shown].tolist(), c.capacity[shown].tolist())]
    after[shown] = ["; filled with " + ("nothing" if high == 0 else f"priority {low}" if low == high
                                        else f"priorities {low}-{high}") + ")"
                    for low, high in zip(lowest[shown].tolist(), highest[shown].tolist())]
    texts = [f"{head}{need}{tail}" for head, need, tail in
             zip(before[r].tolist(), c.pair_units[pairs[named]].tolist(), after[r].tolist())]
    counts = np.minimum(sizes[exhausted], DETAIL_RESOURCES).tolist()
    more = (sizes[exhausted] - DETAIL_RESOURCES).tolist()
    sentences, at = [], 0
    for count, extra in zip(counts, more):
        sentences.append("eligible resources full: " + ", ".join(texts[at:at + count])
                         + (f" and {extra} more" if extra > 0 else ""))
        at += count
    detail[rows[exhausted]] = sentences


def _cost_sentences(c: CompiledInstance, rows: np.ndarray, pairs: np.ndarray, full: np.ndarray, room: np.ndarray,
                    groups: np.ndarray, group_start: np.ndarray, sizes: np.ndarray) -> list[str]:
    """Why each of `rows` (its request's pairs grouped as `groups`) is left out although a resource has room:
    the request's value and its best fitting pair's cost, what the pair would add, and what would change it."""
    value = np.where(full, np.iinfo(np.int64).min, c.pair_value[pairs])  # only pairs that fit compete
    sentences = []
    for i, group in zip(rows.tolist(), groups.tolist()):
        at = int(group_start[group])
        p = int(pairs[at + int(np.argmax(value[at:at + int(sizes[group])]))])
        worth, units, priority = int(c.request_value[i]), int(c.request_units[i]), int(c.priority[i])
        cost, resource = int(c.pair_cost[p]), int(c.pair_resource[p])
        # weight.P must exceed cost / units for the pair to add something: the smallest integer that does.
        weight_needed = cost // units + 1
        sentences.append(
            f"value {worth} (weight.{priority} {worth // units} x {units} unit{'' if units == 1 else 's'}) does not exceed cost {cost} of the "
            f"best pair with room ({c.resource_ids[resource]}, {int(room[resource])} units free), so allocating "
            f"adds {int(c.pair_value[p])} to the objective; set weight.{priority} to {weight_needed} or more, or "
            f"bring the pair's cost below {worth} (default_cost for a resource that is neither preferred nor "
            f"continuing, or the eligibility cost)")
    return sentences
