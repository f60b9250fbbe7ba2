"""Array form of an AllocationInstance: integer indices, pair values, pins and exclusions applied."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from solvers.schema import AllocationInstance, SolverParams

NO_PAIR = -1


@dataclass
class CompiledInstance:
    """Requests, resources and pairs as numpy arrays; pairs sorted by request then resource.

    A request's pairs are pair_request_start[i]:pair_request_start[i+1]; a resource's pairs are
    resource_pairs[resource_start[r]:resource_start[r+1]]. Excluded requests and requests whose
    pin was dropped have no pairs. pair_value is what the pair adds to the objective, the move
    penalty included (as a bonus for staying on the previous resource; objective_offset
    subtracts it back for every request that has a previous resource).
    """

    request_ids: np.ndarray
    resource_ids: np.ndarray
    capacity: np.ndarray
    request_units: np.ndarray
    priority: np.ndarray
    must_allocate: np.ndarray
    pair_request: np.ndarray
    pair_resource: np.ndarray
    pair_units: np.ndarray
    pair_cost: np.ndarray
    pair_value: np.ndarray
    pair_request_start: np.ndarray
    resource_pairs: np.ndarray
    resource_start: np.ndarray
    pinned_pair: np.ndarray
    excluded: np.ndarray
    pin_dropped: np.ndarray
    objective_offset: int
    conflicts: list[str] = field(default_factory=list)
    # The previous version's pair of each request where it still exists and still fits beside
    # the pins (NO_PAIR elsewhere): the warm start of a re-run.
    kept_pair: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # Strict stability: kept pairs are fixed like pins (but not reported as pinned).
    strict: bool = False
    # weight[priority] * units of each request: what allocating it is worth before the pair's cost.
    request_value: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def num_requests(self) -> int:
        return len(self.request_ids)

    @property
    def num_pairs(self) -> int:
        return len(self.pair_request)

    @property
    def fixed_pair(self) -> np.ndarray:
        """The pair each request is held to: its pin, or its kept pair under strict stability."""
        if not self.strict or len(self.kept_pair) == 0:
            return self.pinned_pair
        return np.where(self.pinned_pair != NO_PAIR, self.pinned_pair, self.kept_pair)

    def objective(self, assign: np.ndarray) -> int:
        """Objective of an assignment (pair index per request, NO_PAIR when unallocated)."""
        chosen = assign[assign != NO_PAIR]
        return int(self.pair_value[chosen].sum()) + self.objective_offset

    def load(self, assign: np.ndarray) -> np.ndarray:
        """Units allocated on each resource."""
        chosen = assign[assign != NO_PAIR]
        return np.bincount(
            self.pair_resource[chosen], weights=self.pair_units[chosen], minlength=len(self.capacity)
        ).astype(np.int64)


def chosen_pairs(assign: np.ndarray) -> np.ndarray:
    """The pairs of an assignment (or a slice of one), without NO_PAIR."""
    return assign[assign != NO_PAIR]


def compile_instance(instance: AllocationInstance, params: SolverParams) -> CompiledInstance:
    """Index the instance, drop excluded requests' pairs, check pins (dropping impossible ones)."""
    requests = instance.requests
    request_ids = requests["request_id"].to_numpy(dtype=object)
    resource_ids = instance.resources["resource_id"].to_numpy(dtype=object)
    request_index = pd.Index(request_ids)
    resource_index = pd.Index(resource_ids)
    capacity = instance.resources["capacity"].to_numpy(dtype=np.int64)
    units = requests["units"].to_numpy(dtype=np.int64)
    priority = requests["priority"].to_numpy(dtype=np.int64)
    must = requests["must_allocate"].to_numpy(dtype=bool)
    weight = np.array([params.weights.get(int(p), 0) for p in range(0, 6)], dtype=np.int64)
    n = len(request_ids)

    excluded = request_index.isin(list(instance.exclusions))
    pairs = instance.pairs
    pair_request = request_index.get_indexer(pairs["request_id"])
    pair_resource = resource_index.get_indexer(pairs["resource_id"])
    keep = (pair_request >= 0) & (pair_resource >= 0)
    keep &= ~excluded[np.clip(pair_request, 0, None)]
    order = np.lexsort((pair_resource[keep], pair_request[keep]))
    pair_request = pair_request[keep][order].astype(np.int64)
    pair_resource = pair_resource[keep][order].astype(np.int64)
    pair_units = pairs["units"].to_numpy(dtype=np.int64)[keep][order]
    pair_cost = pairs["cost"].to_numpy(dtype=np.int64)[keep][order]
    if len(pair_request) > 1:
        unique = np.ones(len(pair_request), dtype=bool)
        unique[1:] = (np.diff(pair_request) != 0) | (np.diff(pair_resource) != 0)
        pair_request, pair_resource = pair_request[unique], pair_resource[unique]
        pair_units, pair_cost = pair_units[unique], pair_cost[unique]

    # Pins: a pin is kept when its pair exists, the request is not excluded, and the pins on a
    # resource fit its capacity (higher priority, then request order, first).
    conflicts: list[str] = []
    pin_dropped = np.zeros(n, dtype=bool)
    pinned_pair = np.full(n, NO_PAIR, dtype=np.int64)
    pair_request_start = np.searchsorted(pair_request, np.arange(n + 1))
    pin_rows = []
    for request_id, resource_id in sorted(instance.pins.items()):
        i = request_index.get_indexer([request_id])[0]
        if i < 0:
            conflicts.append(f"pin {request_id} -> {resource_id}: unknown request")
            continue
        if excluded[i]:
            conflicts.append(f"pin {request_id} -> {resource_id}: request is excluded")
            continue
        r = resource_index.get_indexer([resource_id])[0]
        lo, hi = pair_request_start[i], pair_request_start[i + 1]
        hit = np.flatnonzero(pair_resource[lo:hi] == r) if r >= 0 else np.array([], dtype=int)
        if len(hit) == 0:
            conflicts.append(f"pin {request_id} -> {resource_id}: not an eligible pair")
            pin_dropped[i] = True
            continue
        pin_rows.append((weight[priority[i]], i, lo + int(hit[0])))
    pinned_load = np.zeros(len(capacity), dtype=np.int64)
    for _, i, p in sorted(pin_rows, key=lambda row: (-row[0], row[1])):
        r = pair_resource[p]
        if pinned_load[r] + pair_units[p] > capacity[r]:
            conflicts.append(
                f"pin {request_ids[i]} -> {resource_ids[r]}: needs {pair_units[p]} units, "
                f"{capacity[r] - pinned_load[r]} left of capacity {capacity[r]} after other pins"
            )
            pin_dropped[i] = True
            continue
        pinned_load[r] += pair_units[p]
        pinned_pair[i] = p

    # A dropped pin leaves its request unallocated (reason pin_conflict) for admins to resolve.
    if pin_dropped.any():
        keep = ~pin_dropped[pair_request]
        old_index = np.flatnonzero(keep)
        remap = np.full(len(pair_request), NO_PAIR, dtype=np.int64)
        remap[old_index] = np.arange(len(old_index))
        pair_request, pair_resource = pair_request[keep], pair_resource[keep]
        pair_units, pair_cost = pair_units[keep], pair_cost[keep]
        held = pinned_pair >= 0  # kept pins belong to requests that keep their pairs
        pinned_pair[held] = remap[pinned_pair[held]]
        pair_request_start = np.searchsorted(pair_request, np.arange(n + 1))

    value = weight[priority] * units
    pair_value = value[pair_request] - pair_cost
    previous_resource = np.full(n, NO_PAIR, dtype=np.int64)
    if instance.previous:
        previous = pd.Series(instance.previous, dtype=object).reindex(request_ids).to_numpy()
        previous_resource = resource_index.get_indexer(pd.Index(previous).astype(object))
    kept_pair = _kept_pairs(previous_resource, pair_request, pair_resource, pair_units, pair_value,
                            pinned_pair, capacity)
    objective_offset = 0
    bonus = int(round(params.stability)) if params.stability is not None else 0
    if instance.previous and bonus:
        # Soft stability: staying earns the bonus; the offset takes it back for every request
        # that had a previous resource, so a move costs `bonus`.
        stays = previous_resource[pair_request] == pair_resource
        pair_value = pair_value + np.where(stays, bonus, 0)
        objective_offset = -bonus * int(request_index.isin(list(instance.previous)).sum())

    resource_pairs = np.argsort(pair_resource, kind="stable")
    resource_start = np.searchsorted(pair_resource[resource_pairs], np.arange(len(capacity) + 1))
    return CompiledInstance(
        request_ids=request_ids,
        resource_ids=resource_ids,
        capacity=capacity,
        request_units=units,
        priority=priority,
        must_allocate=must,
        pair_request=pair_request,
        pair_resource=pair_resource,
        pair_units=pair_units,
        pair_cost=pair_cost,
        pair_value=pair_value.astype(np.int64),
        pair_request_start=pair_request_start,
        resource_pairs=resource_pairs,
        resource_start=resource_start,
        pinned_pair=pinned_pair,
        excluded=excluded,
        pin_dropped=pin_dropped,
        objective_offset=objective_offset,
        conflicts=conflicts,
        kept_pair=kept_pair,
        strict=params.stability is None and bool(instance.previous),
        request_value=np.asarray(value, dtype=np.int64),
    )


def _kept_pairs(
    previous_resource: np.ndarray,
    pair_request: np.ndarray,
    pair_resource: np.ndarray,
    pair_units: np.ndarray,
    pair_value: np.ndarray,
    pinned_pair: np.ndarray,
    capacity: np.ndarray,
) -> np.ndarray:
    """Per request, the pair of its previous resource when it may stay there (NO_PAIR otherwise).

    A request may stay unless it is pinned (its pin decides), its pair is gone (excluded, pin
    dropped, no longer eligible), or its resource is overfull with the pins and the requests
    that stay: then those worth least per unit leave first. Vectorised over pairs.
    """
    n = len(previous_resource)
    kept = np.full(n, NO_PAIR, dtype=np.int64)
    candidates = np.flatnonzero((previous_resource[pair_request] == pair_resource)
                                & (pinned_pair[pair_request] == NO_PAIR))
    if len(candidates) == 0:
        return kept
    room = capacity - np.bincount(pair_resource[pinned_pair[pinned_pair != NO_PAIR]],
                                  weights=pair_units[pinned_pair[pinned_pair != NO_PAIR]],
                                  minlength=len(capacity)).astype(np.int64)
    density = pair_value[candidates] / np.maximum(pair_units[candidates], 1)
    order = candidates[np.lexsort((pair_request[candidates], -density, pair_resource[candidates]))]
    resource = pair_resource[order]
    used = np.cumsum(pair_units[order])
    block_start = np.flatnonzero(np.r_[True, resource[1:] != resource[:-1]])
    before = np.repeat(used[block_start] - pair_units[order][block_start], np.diff(np.r_[block_start, len(order)]))
    fits = used - before <= room[resource]
    kept[pair_request[order[fits]]] = order[fits]
    return kept
