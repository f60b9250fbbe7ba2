"""Tabu search with strategic oscillation for tight components (compiled with numba).

Tight months (must_allocate requests on nearly full resources, the GAP benchmark's type D) defeat
exact re-solves of small neighbourhoods: the improving moves are long chains of shifts between
many resources, each one infeasible on its own. This search walks through infeasible
allocations instead: a shift moves one request to another of its pairs (or, when it is
optional, off the month), capacity overflow is allowed but penalised per unit with one weight
per resource that grows while the resource is overfull and shrinks while it is not (Yagiura,
Ibaraki and Glover's adaptive penalties), and a request may not return to a pair it just left
for a random tenure. A swap trades the resources of two requests; an ejection chain (the TS-EC
of Yagiura, Ibaraki and Glover 2004, chains of two shifts) moves a request onto a resource it
would overfill and one request there on to its best pair elsewhere, evaluated from candidate
lists. The best allocation within capacity is kept. Searches run side by side in threads,
each with its own penalty profile.

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
# Ejection chains (TS-EC, Yagiura, Ibaraki and Glover 2004): besides shifts and swaps, a request
# may enter a resource it overfills while one request there leaves for its best pair elsewhere.
# Measured from the LP rounding, one search, 8 s, seeds 1-3: chu d20100 1.01 % -> 0.85 %, d20200
# 0.87 % -> 0.52 %, yagiura d20400 0.51 % -> 0.41 %, d40400 0.83 % -> 0.86 % (seeds 1-2 with
# d60900: 0.86 / 0.51 % -> 0.81 / 0.51 %): mean of the four 0.80 % -> 0.66 %.
EJECTION_CHAINS = True
# Chains are looked at only when no shift or swap gains more than this (penalised): on chu d20100
# and d20200, 0.85 / 0.52 % with 0, 0.90 / 0.56 % when looked at in every iteration.
CHAIN_WHEN_BELOW = 0.0
# Requests of a resource that an entering request may eject: this many by each of two scores
# (their best way out's gain; that plus the overflow their units take away). All the requests
# of the resource, in every iteration, cost three times a plain iteration (d40400: 1.7 ms vs
# 0.57 ms); 2, when no shift or swap gains, 1.4 times; 1 measured within noise of 2 on d40400
# and d60900.
CHAIN_CANDIDATES = 2
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
    if EJECTION_CHAINS:
        # The ways out of every request, then about half the shifts overfill and try 2 x
        # CHAIN_CANDIDATES ejections; counted, 12,600 moves per iteration on chu d20100 (this
        # estimate: 13,000), 136,000 on yagiura d40400 (144,000).
        moves += len(pairs) * (1 + CHAIN_CANDIDATES)
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
        EJECTION_CHAINS, CHAIN_WHEN_BELOW, CHAIN_CANDIDATES,
    )
    state.best_value, state.iteration, state.since_best = int(best_value), int(iteration), int(since_best)
    return state


@njit(cache=True)
def _overflow(load: int, room: int) -> int:
    return load - room if load > room else 0


@njit(cache=True, nogil=True)
def _leaving(p, load, room, pair_resource, pair_units, penalty):
    """(resource, change of its overflow, of its penalty) when a request leaves pair p (none when p < 0)."""
    if p < 0:
        return -1, 0, 0.0
    r = pair_resource[p]
    leave_over = _overflow(load[r] - pair_units[p], room[r]) - _overflow(load[r], room[r])
    return r, leave_over, penalty[r] * leave_over


@njit(cache=True, nogil=True)
def _move(j, new, assign, load, room, pair_resource, pair_units):
    """Move request j to pair `new` (-1: off the month); the change of the total overflow."""
    dover = 0
    old = assign[j]
    if old >= 0:
        r = pair_resource[old]
        dover -= _overflow(load[r], room[r])
        load[r] -= pair_units[old]
        dover += _overflow(load[r], room[r])
    if new >= 0:
        r = pair_resource[new]
        dover -= _overflow(load[r], room[r])
        load[r] += pair_units[new]
        dover += _overflow(load[r], room[r])
    assign[j] = new
    return dover


@njit(cache=True, nogil=True)
def _reload(assign, load, pair_resource, pair_units, pair_value, room):
    """Loads recomputed from `assign`; (value, overflow)."""
    load[:] = 0
    value = 0
    for j in range(len(assign)):
        if assign[j] >= 0:
            load[pair_resource[assign[j]]] += pair_units[assign[j]]
            value += pair_value[assign[j]]
    over = 0
    for r in range(len(room)):
        over += _overflow(load[r], room[r])
    return value, over


@njit(cache=True, nogil=True)
def _insert(keys, scores, key, score):
    """Insert `key` into the top list `keys` sorted by descending `scores` (-1: empty slot)."""
    m = len(keys)
    if keys[m - 1] >= 0 and score <= scores[m - 1]:
        return
    at = m - 1
    while at > 0 and (keys[at - 1] < 0 or scores[at - 1] < score):
        keys[at] = keys[at - 1]
        scores[at] = scores[at - 1]
        at -= 1
    keys[at] = key
    scores[at] = score


@njit(cache=True, nogil=True)
def _search(assign, load, penalty, tabu_until, best, best_value, iteration, since_best,
            request_start, pair_resource, pair_units, pair_value, must, room, iterations, seed,
            penalty_up, penalty_down, tenure_min, tenure_spread_factor, restart_after, pair_of,
            decay_when_feasible, chains, chain_when_below, chain_candidates):
    np.random.seed(seed)
    n = len(request_start) - 1
    num_resources = len(room)
    tenure_spread = max(1, int(tenure_spread_factor * np.sqrt(n)))
    value, over = _reload(assign, load, pair_resource, pair_units, pair_value, room)
    # Ejection chains: each request's best way out of its resource (to another pair not tabu, or
    # off the month when optional), the best and the best on another resource than the first's.
    out_score = np.empty((n, 2))
    out_pair = np.empty((n, 2), dtype=np.int64)
    out_resource = np.empty((n, 2), dtype=np.int64)
    out_over = np.empty((n, 2), dtype=np.int64)
    candidate = np.empty((num_resources, 2 * chain_candidates), dtype=np.int64)
    candidate_score = np.empty((num_resources, 2 * chain_candidates))
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
            r1, leave_over, leave = _leaving(p, load, room, pair_resource, pair_units, penalty)
            v1 = pair_value[p] if p >= 0 else 0
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
        chain_k = -1
        chain_s = -1
        if chains and best_delta <= chain_when_below:
            # Ejection chains of two shifts: j enters a resource r2 it overfills, and one request k
            # on r2 leaves for its best pair elsewhere (not on j's old resource: that is a swap) or
            # the month. The other moves on r3 leave r1 and r2 as they are, so the delta is exact.
            for k in range(n):
                pk = assign[k]
                out_score[k, 0] = -1e300
                out_score[k, 1] = -1e300
                if pk < 0:
                    continue
                if not must[k]:
                    out_score[k, 0], out_pair[k, 0], out_resource[k, 0], out_over[k, 0] = 0.0, -1, -1, 0
                for s in range(request_start[k], request_start[k + 1]):
                    if s == pk or tabu_until[s] > iteration:
                        continue
                    r3 = pair_resource[s]
                    eo = _overflow(load[r3] + pair_units[s], room[r3]) - _overflow(load[r3], room[r3])
                    score = pair_value[s] - penalty[r3] * eo
                    if score > out_score[k, 0]:
                        out_score[k, 1], out_pair[k, 1] = out_score[k, 0], out_pair[k, 0]
                        out_resource[k, 1], out_over[k, 1] = out_resource[k, 0], out_over[k, 0]
                        out_score[k, 0], out_pair[k, 0], out_resource[k, 0], out_over[k, 0] = score, s, r3, eo
                    elif score > out_score[k, 1]:
                        out_score[k, 1], out_pair[k, 1], out_resource[k, 1], out_over[k, 1] = score, s, r3, eo
            # Candidate lists: per resource, the requests there with the best ways out, by gain alone
            # and by gain plus the overflow their units would take away.
            candidate[:] = -1
            for k in range(n):
                pk = assign[k]
                if pk < 0 or out_score[k, 0] == -1e300:
                    continue
                r = pair_resource[pk]
                gain = out_score[k, 0] - pair_value[pk]
                _insert(candidate[r, :chain_candidates], candidate_score[r, :chain_candidates], k, gain)
                _insert(candidate[r, chain_candidates:], candidate_score[r, chain_candidates:], k,
                        gain + penalty[r] * pair_units[pk])
            for j in range(n):
                p = assign[j]
                r1, leave_over, leave = _leaving(p, load, room, pair_resource, pair_units, penalty)
                v1 = pair_value[p] if p >= 0 else 0
                for q in range(request_start[j], request_start[j + 1]):
                    if q == p:
                        continue
                    r2 = pair_resource[q]
                    entered = load[r2] + pair_units[q]
                    if entered <= room[r2]:
                        continue  # the shift alone fits: no need to eject anyone
                    before2 = _overflow(load[r2], room[r2])
                    for m in range(2 * chain_candidates):
                        k = candidate[r2, m]
                        if k < 0:
                            continue
                        pk = assign[k]
                        o = 0 if r1 < 0 or out_resource[k, 0] != r1 else 1
                        if out_score[k, o] == -1e300:
                            continue
                        d2 = _overflow(entered - pair_units[pk], room[r2]) - before2
                        dv = pair_value[q] - v1 - pair_value[pk] + (pair_value[out_pair[k, o]] if out_pair[k, o] >= 0 else 0)
                        dover = leave_over + d2 + out_over[k, o]
                        feasible_best = over + dover == 0 and value + dv > best_value
                        if tabu_until[q] > iteration and not feasible_best:
                            continue
                        delta = pair_value[q] - v1 - leave - penalty[r2] * d2 - pair_value[pk] + out_score[k, o]
                        if feasible_best:
                            delta += 1e12
                        if delta > best_delta:
                            best_delta, best_j, best_q, ties = delta, j, q, 1
                            swap_k, chain_k, chain_s = -1, k, out_pair[k, o]
                        elif delta == best_delta:
                            ties += 1
                            if np.random.randint(ties) == 0:
                                best_j, best_q = j, q
                                swap_k, chain_k, chain_s = -1, k, out_pair[k, o]
        if best_j < 0:
            break
        tenure = tenure_min + np.random.randint(tenure_spread)
        if swap_k >= 0:  # best_j and swap_k trade resources; best_q is best_j's new pair
            p, q = assign[best_j], assign[swap_k]
            pk = pair_of[swap_k, pair_resource[p]]
            value += pair_value[best_q] + pair_value[pk] - pair_value[p] - pair_value[q]
            over += _move(best_j, -1, assign, load, room, pair_resource, pair_units)
            over += _move(swap_k, pk, assign, load, room, pair_resource, pair_units)
            over += _move(best_j, best_q, assign, load, room, pair_resource, pair_units)
            tabu_until[p] = iteration + tenure
            tabu_until[q] = iteration + tenure_min + np.random.randint(tenure_spread)
        else:  # best_j leaves its pair (if any) for best_q (-1: off the month), chain_k then leaves too
            p = assign[best_j]
            if p >= 0:
                value -= pair_value[p]
                tabu_until[p] = iteration + tenure
            if best_q >= 0:
                value += pair_value[best_q]
            over += _move(best_j, best_q, assign, load, room, pair_resource, pair_units)
            if chain_k >= 0:
                pk = assign[chain_k]
                value += (pair_value[chain_s] if chain_s >= 0 else 0) - pair_value[pk]
                tabu_until[pk] = iteration + tenure_min + np.random.randint(tenure_spread)
                over += _move(chain_k, chain_s, assign, load, room, pair_resource, pair_units)
        if over == 0 and value > best_value:
            best_value = value
            best[:] = assign
            since_best = 0
        for r in range(num_resources):
            if load[r] > room[r]:
                penalty[r] *= penalty_up
            elif over == 0 or not decay_when_feasible:
                penalty[r] = max(penalty[r] * penalty_down, MIN_PENALTY)
        if since_best > restart_after and best_value > NO_BEST:
            since_best = 0
            assign[:] = best
            value, over = _reload(assign, load, pair_resource, pair_units, pair_value, room)
    return best_value, iteration, since_best
