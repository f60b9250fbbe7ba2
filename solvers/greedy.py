"""Priority-density greedy: the warm start and fallback of the CP-SAT model."""

from __future__ import annotations

import numpy as np

from solvers.compiled import NO_PAIR, CompiledInstance


def initial_assignment(c: CompiledInstance) -> np.ndarray:
    """Pins only: the pair index per request, NO_PAIR elsewhere."""
    return c.pinned_pair.copy()


def request_best_value_and_units(c: CompiledInstance) -> tuple[np.ndarray, np.ndarray]:
    """Per request: its best pair value and smallest pair units (0 and 1 when it has no pairs)."""
    starts = c.pair_request_start[:-1]
    has_pairs = c.pair_request_start[1:] > starts
    best_value = np.zeros(c.num_requests, dtype=np.float64)
    min_units = np.ones(c.num_requests, dtype=np.float64)
    if has_pairs.any():
        best_value[has_pairs] = np.maximum.reduceat(c.pair_value, starts[has_pairs])
        min_units[has_pairs] = np.minimum.reduceat(c.pair_units, starts[has_pairs])
    return best_value, np.maximum(min_units, 1)


def fill_order(c: CompiledInstance, requests: np.ndarray) -> np.ndarray:
    """Requests in greedy order: must_allocate first (fewest options, largest), then by density."""
    best_value, min_units = request_best_value_and_units(c)
    options = (c.pair_request_start[1:] - c.pair_request_start[:-1])[requests]
    best_value, min_units = best_value[requests], min_units[requests]
    density = best_value / min_units
    must = c.must_allocate[requests]
    # lexsort: last key is primary.
    options_key = np.where(must, options, 0)
    units_key = np.where(must, -min_units, 0)
    order = np.lexsort((requests, -density, units_key, options_key, ~must))
    return requests[order]


def greedy_fill(
    c: CompiledInstance,
    assign: np.ndarray,
    requests: np.ndarray | None = None,
    resource_price: np.ndarray | None = None,
) -> np.ndarray:
    """Assign each unassigned request (in fill_order) to its best-valued pair that still fits.

    Only pairs with a positive value are taken, except for must_allocate requests. The best pair
    has the highest value (less resource_price * units when prices are given); ties go to the
    resource left with the least room (best fit), which keeps large holes for large requests.
    """
    assign = assign.copy()
    if requests is None:
        requests = np.flatnonzero(assign == NO_PAIR)
    requests = requests[
        (assign[requests] == NO_PAIR)
        & (c.pair_request_start[requests + 1] > c.pair_request_start[requests])
    ]
    if len(requests) == 0:
        return assign
    room = (c.capacity - c.load(assign)).tolist()
    order = fill_order(c, requests).tolist()
    starts = c.pair_request_start.tolist()
    pair_resource = c.pair_resource.tolist()
    pair_units = c.pair_units.tolist()
    pair_value = c.pair_value.tolist()
    must = c.must_allocate.tolist()
    # With prices (LP duals), a pair is judged by its value less the capacity it uses at that price.
    price = (
        (c.pair_value - resource_price[c.pair_resource] * c.pair_units).tolist()
        if resource_price is not None
        else pair_value
    )
    for i in order:
        best, best_key = NO_PAIR, None
        floor = None if must[i] else 0
        for p in range(starts[i], starts[i + 1]):
            r = pair_resource[p]
            left = room[r] - pair_units[p]
            if left < 0 or (floor is not None and pair_value[p] <= floor):
                continue
            key = (price[p], -left)
            if best_key is None or key > best_key:
                best, best_key = p, key
        if best != NO_PAIR:
            assign[i] = best
            room[pair_resource[best]] -= pair_units[best]
    return assign
