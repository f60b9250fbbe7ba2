"""Large neighbourhood search: re-solve a few related resources exactly with CP-SAT, repeat.

The neighbourhoods come from a seeded generator and each CP-SAT call runs one worker with a
deterministic time limit, so the sequence of iterations is deterministic; the loop stops on a
budget of deterministic work (exact repeats) or on the deadline (wall-clock mode).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from solvers.compiled import NO_PAIR, CompiledInstance
from solvers.cpsat import SOLVED, SearchLimits, solve_part
from solvers.greedy import request_best_value_and_units

# Neighbourhood size, counted in candidate pairs, adapts between these limits.
MIN_TARGET_PAIRS = 60
MAX_TARGET_PAIRS = 6000
INITIAL_TARGET_PAIRS = 800
# Deterministic time given to one neighbourhood's CP-SAT call (default of improve()).
SUB_DETERMINISTIC_TIME = 0.02
# CP-SAT's presolve is off for the re-solves: measured on a 1,000 x 50 component of the
# 20,000-request month (one thread, equal work), 13,700 objective units gained per wall second
# without it, 7,900 with it (each call cost ~23 ms, mostly presolve, for ~230 variables).
SUB_PRESOLVE = False
# Python work of one iteration, charged to the deterministic budget: fixed + per model pair.
ITERATION_WORK = 0.02
WORK_PER_PAIR = 2e-5


@dataclass
class LnsStats:
    """What the search did."""

    iterations: int = 0
    improvements: int = 0
    work: float = 0.0
    build_seconds: float = 0.0  # building the re-solves' CP-SAT models (summed over threads)


@dataclass
class _Neighbourhood:
    """One re-solve: the requests set free, the resources they may use, their room, their value now."""

    free: np.ndarray
    mask: np.ndarray
    room: np.ndarray
    before: int
    seed: int


def improve(
    c: CompiledInstance,
    assign: np.ndarray,
    work_budget: float,
    deadline: float,
    seed: int,
    progress: Callable[[float, float, float], None] | None = None,
    progress_start: float = 0.0,
    bound: float = float("inf"),
    resources: np.ndarray | None = None,
    sub_deterministic_time: float = SUB_DETERMINISTIC_TIME,
    target: float | None = None,
    threads: int = 1,
) -> tuple[np.ndarray, LnsStats]:
    """Improve `assign` by repeated exact re-solves of neighbourhoods until the budget is spent.

    Neighbourhoods are seeded on `resources` (default: every resource with pairs); each
    re-solve gets sub_deterministic_time. `threads` neighbourhoods with disjoint resources and
    requests are re-solved side by side in threads and applied in order, so a
    run repeats for a seed and budget; a round charges the budget its longest re-solve. The
    search stops early once the objective reaches `target` (default `bound`; the reported bound).
    """
    stats = LnsStats()
    assign = assign.copy()
    target = bound if target is None else target
    movable_resources = np.flatnonzero(np.diff(c.resource_start) > 0)
    if resources is not None:
        movable_resources = np.intersect1d(movable_resources, resources)
    if len(movable_resources) == 0:
        return assign, stats
    rng = np.random.default_rng(seed)
    threads = max(int(threads), 1)
    pinned = c.fixed_pair != NO_PAIR  # pins, and requests held under strict stability
    load = c.load(assign)
    best_value, min_units = request_best_value_and_units(c)
    density = best_value / min_units
    objective = c.objective(assign)
    target_pairs = float(INITIAL_TARGET_PAIRS)
    pairs_per_resource = np.diff(c.resource_start)
    with_pairs = np.diff(c.pair_request_start) > 0
    average_options = c.num_pairs / max(int(with_pairs.sum()), 1)
    # Share of a resource's pairs that belong to unallocated requests worth allocating.
    waiting_share = float(((assign == NO_PAIR) & with_pairs & (best_value > 0)).sum()) / max(
        int(with_pairs.sum()), 1
    )
    # Requests held on each resource, kept up to date as moves are applied (no pass over the month).
    assigned_count = np.bincount(c.pair_resource[assign[assign != NO_PAIR]], minlength=len(c.capacity))
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None

    def resolve(task: _Neighbourhood):
        remaining_wall = deadline - time.perf_counter()
        return solve_part(
            c, task.free, task.room,
            SearchLimits(
                deterministic_time=min(sub_deterministic_time, max(work_budget - stats.work, 0.01)),
                wall_seconds=max(remaining_wall, 0.01),
                seed=task.seed,
                presolve=SUB_PRESOLVE,
            ),
            resource_mask=task.mask,
            hint=assign,
        )

    try:
        while stats.work < work_budget and time.perf_counter() < deadline and objective < target:
            taken_resources = np.zeros(len(c.capacity), dtype=bool)
            taken_requests: list[np.ndarray] = []
            batch = []
            for _ in range(threads):
                stats.iterations += 1
                activity = assigned_count + pairs_per_resource * waiting_share
                chosen = _neighbourhood(c, assign, rng, movable_resources, activity, average_options, target_pairs)
                chosen = chosen[~taken_resources[chosen]]
                if len(chosen) == 0:
                    continue
                task = _build_neighbourhood(c, assign, load, chosen, best_value, density, pinned, target_pairs,
                                            np.concatenate(taken_requests) if taken_requests else None,
                                            seed + stats.iterations)
                taken_resources[chosen] = True
                taken_requests.append(task.free)
                batch.append(task)
            results = list(pool.map(resolve, batch)) if pool is not None and len(batch) > 1 else [
                resolve(task) for task in batch]
            stats.work += max((r.deterministic_time + ITERATION_WORK + WORK_PER_PAIR * r.num_variables
                               for r in results), default=ITERATION_WORK)
            for task, result in zip(batch, results):
                stats.build_seconds += result.build_seconds
                if result.status == cp_model.OPTIMAL:
                    target_pairs = min(target_pairs * 1.2, MAX_TARGET_PAIRS)
                else:
                    target_pairs = max(target_pairs * 0.8, MIN_TARGET_PAIRS)
                if result.status not in SOLVED or result.objective <= task.before:
                    continue
                old = assign[task.free]
                old_on = old[old != NO_PAIR]
                np.subtract.at(load, c.pair_resource[old_on], c.pair_units[old_on])
                np.subtract.at(assigned_count, c.pair_resource[old_on], 1)
                assign[task.free] = result.chosen
                new_on = result.chosen[result.chosen != NO_PAIR]
                np.add.at(load, c.pair_resource[new_on], c.pair_units[new_on])
                np.add.at(assigned_count, c.pair_resource[new_on], 1)
                objective += int(result.objective) - task.before
                stats.improvements += 1
                if progress:
                    progress(time.perf_counter() - progress_start, float(objective), float(bound))
    finally:
        if pool is not None:
            pool.shutdown()
    return assign, stats


def _build_neighbourhood(
    c: CompiledInstance,
    assign: np.ndarray,
    load: np.ndarray,
    chosen: np.ndarray,
    best_value: np.ndarray,
    density: np.ndarray,
    pinned: np.ndarray,
    target_pairs: float,
    taken: np.ndarray | None,
    seed: int,
) -> _Neighbourhood:
    """The re-solve of the resources `chosen`: the requests on them and the best waiting ones.

    Requests in `taken` (another neighbourhood of the same round) are left out. Work is
    proportional to the chosen resources' pairs, not to the month.
    """
    mask = np.zeros(len(c.capacity), dtype=bool)
    mask[chosen] = True
    candidate_pairs = np.concatenate(
        [c.resource_pairs[c.resource_start[r] : c.resource_start[r + 1]] for r in chosen.tolist()]
    )
    candidate_requests = c.pair_request[candidate_pairs]
    on_chosen = np.unique(candidate_requests[assign[candidate_requests] == candidate_pairs])
    on_chosen = on_chosen[~pinned[on_chosen]]
    waiting = np.unique(candidate_requests)
    waiting = waiting[(assign[waiting] == NO_PAIR) & (best_value[waiting] > 0)]
    if taken is not None and len(taken):
        waiting = waiting[~np.isin(waiting, taken)]
    max_waiting = max(int(target_pairs), 50)
    if len(waiting) > max_waiting:
        waiting = waiting[np.argsort(-density[waiting], kind="stable")[:max_waiting]]
    free = np.union1d(on_chosen, waiting)
    room = c.capacity.copy()
    room[chosen] = c.capacity[chosen] - load[chosen]
    freed = assign[on_chosen]
    np.add.at(room, c.pair_resource[freed], c.pair_units[freed])
    return _Neighbourhood(free=free, mask=mask, room=room, before=int(c.pair_value[freed].sum()), seed=seed)


def _neighbourhood(
    c: CompiledInstance,
    assign: np.ndarray,
    rng: np.random.Generator,
    movable_resources: np.ndarray,
    activity: np.ndarray,
    average_options: float,
    target: float,
) -> np.ndarray:
    """A seed resource plus random resources that share requests with it, about `target` pairs."""
    seed_resource = int(movable_resources[rng.integers(len(movable_resources))])
    seed_pairs = c.resource_pairs[c.resource_start[seed_resource] : c.resource_start[seed_resource + 1]]
    if len(seed_pairs) > 400:
        seed_pairs = rng.choice(seed_pairs, 400, replace=False)
    requests = c.pair_request[seed_pairs]
    related_pairs = np.concatenate(
        [np.arange(c.pair_request_start[i], c.pair_request_start[i + 1]) for i in requests.tolist()]
    )
    related = np.unique(c.pair_resource[related_pairs])
    related = related[related != seed_resource]
    rng.shuffle(related)
    members = np.concatenate(([seed_resource], related))
    # Estimated model size when the first k members are taken: their free requests times the
    # options each has among k resources.
    free_requests = np.cumsum(activity[members])
    options = np.minimum(np.arange(1, len(members) + 1), average_options)
    take = int(np.searchsorted(free_requests * options, target, side="right"))
    return members[: max(take, 2)].astype(np.int64)
