"""Priority-density greedy: the warm start and fallback of the CP-SAT model."""

from __future__ import annotations

import numpy as np
from numba import njit

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
    room = (c.capacity - c.load(assign)).astype(np.int64)
    order = fill_order(c, requests).astype(np.int64)
    # With prices (LP duals), a pair is judged by its value less the capacity it uses at that price.
    price = (
        (c.pair_value - resource_price[c.pair_resource] * c.pair_units).astype(np.float64)
        if resource_price is not None
        else c.pair_value.astype(np.float64)
    )
    _fill(order, c.pair_request_start, c.pair_resource, c.pair_units, c.pair_value, price,
          c.must_allocate, room, assign)
    return assign


@njit(cache=True, nogil=True)
def _fill(order, starts, pair_resource, pair_units, pair_value, price, must, room, assign):
    """greedy_fill's loop, compiled: 5.2 s in Python at 1,000,000 requests."""
    for i in order:
        best = -1
        best_price = 0.0
        best_left = 0
        for p in range(starts[i], starts[i + 1]):
            r = pair_resource[p]
            left = room[r] - pair_units[p]
            if left < 0 or (not must[i] and pair_value[p] <= 0):
                continue
            # Highest price first, then the least room left (best fit).
            if best < 0 or price[p] > best_price or (price[p] == best_price and left < best_left):
                best, best_price, best_left = p, price[p], left
        if best >= 0:
            assign[i] = best
            room[pair_resource[best]] -= pair_units[best]
