"""Ejection-chain local search (compiled with numba) for loose components: cheap moves, many of them.

A move places a request on another of its pairs (or, when it is unallocated, on one of them):
directly when the pair fits, or by ejecting one request from that resource, which either
shifts to another of its pairs that fits or (when optional) leaves the month. The first move
that gains is applied at once; passes over the component repeat until none gains or the time
is up. It reaches in a few passes what the LNS's CP-SAT re-solves of a few resources reach in
hundreds: on loose months (demand above capacity, no must_allocate) the LNS improved at almost
every iteration, i.e. it was far from any local optimum.

Requests held (pins, strict stability) never move; only `usable` pairs are used.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from solvers.compiled import NO_PAIR, CompiledInstance


def improve(
    c: CompiledInstance, assign: np.ndarray, part: np.ndarray, usable: np.ndarray, deadline: float,
    max_passes: int = 50,
) -> tuple[np.ndarray, int]:
    """Apply gaining moves to the requests of `part` until none is left or `deadline`; (assign, passes)."""
    assign = assign.copy()
    movable = np.zeros(c.num_requests, dtype=np.bool_)
    movable[part] = True
    movable &= c.fixed_pair == NO_PAIR
    load = c.load(assign)
    passes = 0
    while passes < max_passes and time.perf_counter() < deadline:
        passes += 1
        gained = _pass(part.astype(np.int64), assign, load, c.capacity, movable, usable, c.must_allocate,
                       c.pair_request_start, c.pair_request, c.pair_resource, c.pair_units, c.pair_value,
                       c.resource_pairs, c.resource_start)
        if gained == 0:
            break
    return assign, passes


@njit(cache=True, nogil=True)
def _pass(part, assign, load, capacity, movable, usable, must, starts, pair_request, pair_resource,
          pair_units, pair_value, resource_pairs, resource_start):
    """One pass of first-improvement moves over `part`; returns the value gained."""
    gained = 0
    for i in part:
        if not movable[i]:
            continue
        p = assign[i]
        r_cur = -1
        v_cur = 0
        u_cur = 0
        if p >= 0:
            r_cur = pair_resource[p]
            v_cur = pair_value[p]
            u_cur = pair_units[p]
        for q in range(starts[i], starts[i + 1]):
            if q == p or not usable[q]:
                continue
            if pair_value[q] <= v_cur:
                continue  # an ejection cannot make up for it (a gaining shift of the holder is its own move)
            r = pair_resource[q]
            room = capacity[r] - load[r]
            if room >= pair_units[q]:
                _place(i, q, p, assign, load, pair_resource, pair_units)
                gained += pair_value[q] - v_cur
                p, r_cur, v_cur, u_cur = q, r, pair_value[q], pair_units[q]
                continue
            deficit = pair_units[q] - room
            # Eject one holder a of r: it shifts to another pair that fits, or leaves when optional.
            best_gain = 0
            best_a = -1
            best_alt = -1
            for k in range(resource_start[r], resource_start[r + 1]):
                pa = resource_pairs[k]
                a = pair_request[pa]
                if a == i or assign[a] != pa or not movable[a] or pair_units[pa] < deficit:
                    continue
                base = pair_value[q] - v_cur - pair_value[pa]
                if not must[a] and base > best_gain:
                    best_gain, best_a, best_alt = base, a, -1
                for qa in range(starts[a], starts[a + 1]):
                    if qa == pa or not usable[qa]:
                        continue
                    ra = pair_resource[qa]
                    if ra == r:
                        continue
                    room_a = capacity[ra] - load[ra]
                    if ra == r_cur:
                        room_a += u_cur  # i leaves r_cur
                    if room_a >= pair_units[qa] and base + pair_value[qa] > best_gain:
                        best_gain, best_a, best_alt = base + pair_value[qa], a, qa
            if best_a >= 0:
                pa = assign[best_a]
                _place(i, -1, p, assign, load, pair_resource, pair_units)
                _place(best_a, best_alt, pa, assign, load, pair_resource, pair_units)
                _place(i, q, -1, assign, load, pair_resource, pair_units)
                gained += best_gain
                p, r_cur, v_cur, u_cur = q, r, pair_value[q], pair_units[q]
    return gained



@njit(cache=True, nogil=True)
def _place(i, new, old, assign, load, pair_resource, pair_units):
    """Move request i from pair `old` to pair `new` (either may be NO_PAIR)."""
    if old >= 0:
        load[pair_resource[old]] -= pair_units[old]
    if new >= 0:
        load[pair_resource[new]] += pair_units[new]
    assign[i] = new
