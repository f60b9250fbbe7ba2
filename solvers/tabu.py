"""Tabu search with strategic oscillation for tight components (compiled with numba).

Tight months (must_allocate requests on nearly full resources, the GAP benchmark's type D) defeat
exact re-solves of small neighbourhoods: the improving moves are long chains of shifts between
many resources, each one infeasible on its own. This search walks through infeasible
allocations instead: a shift moves one request to another of its pairs (or, when it is
optional, off the month), capacity overflow is allowed but penalised per unit with one weight
per resource that grows while the resource is overfull and shrinks while it is not (Yagiura,
Ibaraki and Glover's adaptive penalties), and a request may not return to a pair it just left
for a random tenure. The best allocation within capacity is kept. Searches run side by side in
threads, each with its own penalty profile.

Everything is local to one component: pairs are numbered 0..P-1 grouped by request, resources
0..R-1. Runs are deterministic for a seed and a number of iterations; callers run it in chunks
to watch the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numba import njit

from solvers.compiled import NO_PAIR, CompiledInstance

MIN_PENALTY = 1e-3
# The searches run side by side take these penalty profiles in turn: (growth per iteration of the
# weight of an overfull resource, decay of the others', decay only while the whole allocation
# fits). Measured from the LP rounding (4 seeds, 8 s of work each):
# the first is best on small tight months (chu d20100 0.89 % mean vs 1.02 %), the second on
# larger ones (yagiura d40400 0.64 % vs 0.82 %, d20400 0.36 % vs 0.47 %).
PENALTY_PROFILES = ((1.0003, 0.9997, False), (1.001, 0.999, True))
# Tabu tenure: a request may not go back to a pair it left for TENURE_MIN + rand(TENURE_SPREAD x
# sqrt(requests)) iterations.
TENURE_MIN = 3
TENURE_SPREAD = 1.0
# Iterations without a new best before the search restarts from the best allocation. Measured
# from the LP rounding on chu d20100, d20200, yagiura d20400, d40400 (4 seeds, 8 s of work each):
# mean gap 0.82 % with 4000, 0.70 % with 1000 and 500, 0.77 % with 300 and 100, 1.0 % without.
RESTART_AFTER = 1000
NO_BEST = -(2**62)
# Swap moves need a dense request x resource map; above this many cells only shifts are tried.
MAX_SWAP_MAP = 20_000_000


@dataclass
class TabuState:
    """The search's state between chunks (all arrays local to the component)."""

    assign: np.ndarray  # current local pair per request, -1 when unallocated
    load: np.ndarray
    penalty: np.ndarray  # per resource, value per overfull unit
    tabu_until: np.ndarray  # per pair: iteration before which a request may not move back to it
    best: np.ndarray  # best allocation within capacity
    best_value: int
    iteration: int
    since_best: int
    seed: int
    pair_of: np.ndarray  # request x resource -> local pair (-1: none); empty: no swap moves
    profile: tuple[float, float, bool]  # one of PENALTY_PROFILES


# Cost model of one iteration, in seconds per move evaluated (measured 4-8 ns on this machine):
# it turns a deterministic work budget into a number of iterations, and sizes the chunks between
# two looks at the clock (CHUNK_SECONDS each).
SECONDS_PER_MOVE = 6e-9
CHUNK_SECONDS = 0.05


def improve_component(
    c: CompiledInstance,
    assign: np.ndarray,
    part: np.ndarray,
    pairs: np.ndarray,
    room: np.ndarray,
    work: float,
    deadline: float,
    seed: int,
    report: Callable[[int], None] | None = None,
    threads: int = 1,
    target: float | None = None,
) -> tuple[np.ndarray, float]:
    """Tabu search on one component (`part`, its sorted `pairs`); (better assign, work spent).

    Stops after `work` (deterministic, in SECONDS_PER_MOVE units per thread) or at `deadline`,
    whichever comes first. `room` is the free capacity of each resource for this component.
    `threads` independent searches (seeds seed, seed + 1, ..., PENALTY_PROFILES in turn) run side
    by side from `assign` (which may overfill resources); the best allocation within capacity any
    of them met is returned (the first one's on a tie), or `assign` when none was. `report` gets
    the component's value (sum of its chosen pairs' values) whenever it improves. The search
    stops early once an allocation within capacity is worth `target` (the tolerance's reach).
    """
    sizes = np.diff(c.pair_request_start)[part]
    request_start = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    resources, pair_resource = np.unique(c.pair_resource[pairs], return_inverse=True)
    pair_resource = pair_resource.astype(np.int64)
    units = c.pair_units[pairs].astype(np.int64)
    values = c.pair_value[pairs].astype(np.int64)
    local_room = room[resources].astype(np.int64)
    current = assign[part]
    local = np.where(current == NO_PAIR, -1, np.searchsorted(pairs, current)).astype(np.int64)
    pair_of = _pair_map(request_start, pair_resource, len(local_room))
    states = [start(request_start, pair_resource, units, values, local_room, local,
                    seed + k, pair_of, PENALTY_PROFILES[k % len(PENALTY_PROFILES)])
              for k in range(max(threads, 1))]
    n = len(part)
    moves = len(pairs) + (n * (n - 1) // 2 if pair_of.shape[0] == n else 0)
    per_chunk = max(int(CHUNK_SECONDS / (SECONDS_PER_MOVE * max(moves, 1))), 1)
    budget = int(work / (SECONDS_PER_MOVE * max(moves, 1))) if np.isfinite(work) else None
    must = c.must_allocate[part]

    def step(state: TabuState, chunk: int) -> TabuState:
        return run(state, request_start, pair_resource, units, values, must, local_room, chunk)

    best_value = max(state.best_value for state in states)
    with ThreadPoolExecutor(max_workers=len(states)) as pool:  # _search releases the GIL
        while ((budget is None or states[0].iteration < budget) and time.perf_counter() < deadline
               and (target is None or max(state.best_value for state in states) < target)):
            chunk = per_chunk if budget is None else min(per_chunk, budget - states[0].iteration)
            list(pool.map(step, states, [chunk] * len(states)))
            if report is not None and max(state.best_value for state in states) > best_value:
                best_value = max(state.best_value for state in states)
                report(best_value)
    spent = states[0].iteration * moves * SECONDS_PER_MOVE
    winner = max(states, key=lambda state: state.best_value)  # the first on a tie
    if winner.best_value == NO_BEST:
        return assign, spent
    improved = assign.copy()
    improved[part] = np.where(winner.best < 0, NO_PAIR, pairs[np.clip(winner.best, 0, None)])
    return improved, spent


def start(
    request_start: np.ndarray,
    pair_resource: np.ndarray,
    pair_units: np.ndarray,
    pair_value: np.ndarray,
    room: np.ndarray,
    assign: np.ndarray,
    seed: int,
    pair_of: np.ndarray,
    profile: tuple[float, float, bool],
) -> TabuState:
    """The state for a starting allocation `assign` (local pair per request or -1).

    It may overfill resources; best_value is NO_BEST until an allocation within capacity is met.
    `pair_of` is the swap map (_pair_map), `profile` one of PENALTY_PROFILES.
    """
    load = np.zeros(len(room), dtype=np.int64)
    on = assign[assign >= 0]
    np.add.at(load, pair_resource[on], pair_units[on])
    value = int(pair_value[on].sum()) if (load <= room).all() else NO_BEST
    units = pair_units.astype(np.float64)
    values = pair_value.astype(np.float64)
    scale = float(np.abs(values - values.mean()).mean() / max(units.mean(), 1.0)) if len(values) else 1.0
    return TabuState(
        assign=assign.astype(np.int64).copy(), load=load,
        penalty=np.full(len(room), max(scale, MIN_PENALTY)),
        tabu_until=np.zeros(len(pair_resource), dtype=np.int64), best=assign.astype(np.int64).copy(),
        best_value=value, iteration=0, since_best=0, seed=seed,
        pair_of=pair_of, profile=profile,
    )


def _pair_map(request_start: np.ndarray, pair_resource: np.ndarray, num_resources: int) -> np.ndarray:
    """Dense request x resource -> pair map for swap moves (empty when it would be too large)."""
    n = len(request_start) - 1
    if n * num_resources > MAX_SWAP_MAP:
        return np.zeros((0, 0), dtype=np.int64)
    pair_of = np.full((n, num_resources), -1, dtype=np.int64)
    requests = np.repeat(np.arange(n), np.diff(request_start))
    pair_of[requests, pair_resource] = np.arange(len(pair_resource))
    return pair_of


def run(
    state: TabuState,
    request_start: np.ndarray,
    pair_resource: np.ndarray,
    pair_units: np.ndarray,
    pair_value: np.ndarray,
    must: np.ndarray,
    room: np.ndarray,
    iterations: int,
) -> TabuState:
    """Run `iterations` more iterations; state.best is the best allocation within `room`."""
    best_value, iteration, since_best = _search(
        state.assign, state.load, state.penalty, state.tabu_until, state.best, state.best_value,
        state.iteration, state.since_best, request_start, pair_resource, pair_units, pair_value,
        must, room, iterations, state.seed + state.iteration,
        *state.profile[:2], TENURE_MIN, TENURE_SPREAD, RESTART_AFTER, state.pair_of, state.profile[2],
    )
    state.best_value, state.iteration, state.since_best = int(best_value), int(iteration), int(since_best)
    return state


@njit(cache=True)
def _overflow(load: int, room: int) -> int:
    return load - room if load > room else 0


@njit(cache=True, nogil=True)
def _search(assign, load, penalty, tabu_until, best, best_value, iteration, since_best,
            request_start, pair_resource, pair_units, pair_value, must, room, iterations, seed,
            penalty_up, penalty_down, tenure_min, tenure_spread_factor, restart_after, pair_of,
            decay_when_feasible):
    np.random.seed(seed)
    n = len(request_start) - 1
    tenure_spread = max(1, int(tenure_spread_factor * np.sqrt(n)))
    value = 0
    over = 0
    for j in range(n):
        if assign[j] >= 0:
            value += pair_value[assign[j]]
    for r in range(len(room)):
        over += _overflow(load[r], room[r])
    for _ in range(iterations):
        iteration += 1
        since_best += 1
        best_delta = -1e300
        best_j = -1
        best_q = -2
        ties = 0
        for j in range(n):
            p = assign[j]
            lo, hi = request_start[j], request_start[j + 1]
            if hi == lo:
                continue
            r1 = -1
            u1 = 0
            v1 = 0
            leave = 0.0
            leave_over = 0
            if p >= 0:
                r1 = pair_resource[p]
                u1 = pair_units[p]
                v1 = pair_value[p]
                leave_over = _overflow(load[r1] - u1, room[r1]) - _overflow(load[r1], room[r1])
                leave = penalty[r1] * leave_over
            # Options: every other pair of j, and leaving the month when j is optional.
            for q in range(lo, hi + (0 if must[j] else 1)):
                if q == hi:
                    if p < 0:
                        continue
                    dv = -v1
                    dover = leave_over
                    dpen = leave
                    q_id = -1
                else:
                    if q == p:
                        continue
                    r2 = pair_resource[q]
                    u2 = pair_units[q]
                    enter_over = _overflow(load[r2] + u2, room[r2]) - _overflow(load[r2], room[r2])
                    dv = pair_value[q] - v1
                    dover = leave_over + enter_over
                    dpen = leave + penalty[r2] * enter_over
                    q_id = q
                feasible_best = over + dover == 0 and value + dv > best_value
                if q_id >= 0 and tabu_until[q_id] > iteration and not feasible_best:
                    continue
                delta = dv - dpen
                if feasible_best:
                    delta += 1e12  # aspiration: a new best allocation within capacity
                if delta > best_delta:
                    best_delta, best_j, best_q, ties = delta, j, q_id, 1
                elif delta == best_delta:
                    ties += 1
                    if np.random.randint(ties) == 0:
                        best_j, best_q = j, q_id
        swap_k = -1
        if pair_of.shape[0] == n:
            for j in range(n):
                p = assign[j]
                if p < 0:
                    continue
                r1 = pair_resource[p]
                for k in range(j + 1, n):
                    q = assign[k]
                    if q < 0:
                        continue
                    r2 = pair_resource[q]
                    if r2 == r1:
                        continue
                    pj = pair_of[j, r2]
                    pk = pair_of[k, r1]
                    if pj < 0 or pk < 0:
                        continue
                    new1 = load[r1] - pair_units[p] + pair_units[pk]
                    new2 = load[r2] - pair_units[q] + pair_units[pj]
                    d1 = _overflow(new1, room[r1]) - _overflow(load[r1], room[r1])
                    d2 = _overflow(new2, room[r2]) - _overflow(load[r2], room[r2])
                    dv = pair_value[pj] + pair_value[pk] - pair_value[p] - pair_value[q]
                    feasible_best = over + d1 + d2 == 0 and value + dv > best_value
                    if (tabu_until[pj] > iteration or tabu_until[pk] > iteration) and not feasible_best:
                        continue
                    delta = dv - penalty[r1] * d1 - penalty[r2] * d2
                    if feasible_best:
                        delta += 1e12
                    if delta > best_delta:
                        best_delta, best_j, best_q, swap_k, ties = delta, j, pj, k, 1
                    elif delta == best_delta:
                        ties += 1
                        if np.random.randint(ties) == 0:
                            best_j, best_q, swap_k = j, pj, k
        if best_j < 0:
            break
        if swap_k >= 0:  # best_j and swap_k trade resources; best_q is best_j's new pair
            p, q = assign[best_j], assign[swap_k]
            r1, r2 = pair_resource[p], pair_resource[q]
            pk = pair_of[swap_k, r1]
            over -= _overflow(load[r1], room[r1]) + _overflow(load[r2], room[r2])
            load[r1] += pair_units[pk] - pair_units[p]
            load[r2] += pair_units[best_q] - pair_units[q]
            over += _overflow(load[r1], room[r1]) + _overflow(load[r2], room[r2])
            value += pair_value[best_q] + pair_value[pk] - pair_value[p] - pair_value[q]
            tabu_until[p] = iteration + tenure_min + np.random.randint(tenure_spread)
            tabu_until[q] = iteration + tenure_min + np.random.randint(tenure_spread)
            assign[swap_k] = pk
        else:  # best_j leaves its pair (if any) for best_q (-1: off the month)
            p = assign[best_j]
            if p >= 0:
                r1 = pair_resource[p]
                over -= _overflow(load[r1], room[r1])
                load[r1] -= pair_units[p]
                over += _overflow(load[r1], room[r1])
                value -= pair_value[p]
                tabu_until[p] = iteration + tenure_min + np.random.randint(tenure_spread)
            if best_q >= 0:
                r2 = pair_resource[best_q]
                over -= _overflow(load[r2], room[r2])
                load[r2] += pair_units[best_q]
                over += _overflow(load[r2], room[r2])
                value += pair_value[best_q]
        assign[best_j] = best_q
        if over == 0 and value > best_value:
            best_value = value
            best[:] = assign
            since_best = 0
        for r in range(len(room)):
            if load[r] > room[r]:
                penalty[r] *= penalty_up
            elif over == 0 or not decay_when_feasible:
                penalty[r] = max(penalty[r] * penalty_down, MIN_PENALTY)
        if since_best > restart_after and best_value > NO_BEST:
            since_best = 0
            assign[:] = best
            for r in range(len(room)):
                load[r] = 0
            for j in range(n):
                if assign[j] >= 0:
                    load[pair_resource[assign[j]]] += pair_units[assign[j]]
            value = best_value
            over = 0
    return best_value, iteration, since_best
