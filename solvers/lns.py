"""Large neighbourhood search: re-solve a few related resources exactly with CP-SAT, repeat.

The neighbourhoods come from a seeded generator and each CP-SAT call runs one worker with a
deterministic time limit, so the sequence of iterations is deterministic; the loop stops on a
budget of deterministic work (exact repeats) or on the deadline (wall-clock mode).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

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
# Python work of one iteration, charged to the deterministic budget: fixed + per model pair.
ITERATION_WORK = 0.02
WORK_PER_PAIR = 2e-5


@dataclass
class LnsStats:
    """What the search did."""

    iterations: int = 0
    improvements: int = 0
    work: float = 0.0


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
) -> tuple[np.ndarray, LnsStats]:
    """Improve `assign` by repeated exact re-solves of neighbourhoods until the budget is spent.

    Neighbourhoods are seeded on `resources` (default: every resource with pairs); each
    re-solve gets sub_deterministic_time.
    """
    stats = LnsStats()
    assign = assign.copy()
    movable_resources = np.flatnonzero(np.diff(c.resource_start) > 0)
    if resources is not None:
        movable_resources = np.intersect1d(movable_resources, resources)
    if len(movable_resources) == 0:
        return assign, stats
    rng = np.random.default_rng(seed)
    pinned = c.pinned_pair != NO_PAIR
    load = c.load(assign)
    best_value, min_units = request_best_value_and_units(c)
    density = best_value / min_units
    objective = c.objective(assign)
    target = float(INITIAL_TARGET_PAIRS)
    resource_mask = np.zeros(len(c.capacity), dtype=bool)
    pairs_per_resource = np.diff(c.resource_start)
    with_pairs = np.diff(c.pair_request_start) > 0
    average_options = c.num_pairs / max(int(with_pairs.sum()), 1)
    # Share of a resource's pairs that belong to unallocated requests worth allocating.
    waiting_share = float(((assign == NO_PAIR) & with_pairs & (best_value > 0)).sum()) / max(
        int(with_pairs.sum()), 1
    )

    while stats.work < work_budget and time.perf_counter() < deadline:
        stats.iterations += 1
        assigned_count = np.bincount(
            c.pair_resource[assign[assign != NO_PAIR]], minlength=len(c.capacity)
        )
        activity = assigned_count + pairs_per_resource * waiting_share
        chosen = _neighbourhood(c, assign, rng, movable_resources, activity, average_options, target)
        resource_mask[:] = False
        resource_mask[chosen] = True

        on_chosen = np.flatnonzero(
            (assign != NO_PAIR) & resource_mask[c.pair_resource[np.clip(assign, 0, None)]] & ~pinned
        )
        candidate_pairs = np.concatenate(
            [c.resource_pairs[c.resource_start[r] : c.resource_start[r + 1]] for r in chosen.tolist()]
        )
        waiting = np.unique(c.pair_request[candidate_pairs])
        waiting = waiting[(assign[waiting] == NO_PAIR) & (best_value[waiting] > 0)]
        max_waiting = max(int(target), 50)
        if len(waiting) > max_waiting:
            waiting = waiting[np.argsort(-density[waiting], kind="stable")[:max_waiting]]
        free = np.union1d(on_chosen, waiting)
        room = c.capacity.copy()
        room[chosen] = c.capacity[chosen] - load[chosen]
        freed = assign[on_chosen]
        np.add.at(room, c.pair_resource[freed], c.pair_units[freed])
        before = int(c.pair_value[freed].sum())

        remaining_wall = deadline - time.perf_counter()
        result = solve_part(
            c,
            free,
            room,
            SearchLimits(
                deterministic_time=min(sub_deterministic_time, max(work_budget - stats.work, 0.01)),
                wall_seconds=max(remaining_wall, 0.01),
                seed=seed + stats.iterations,
            ),
            resource_mask=resource_mask,
            hint=assign,
        )
        stats.work += result.deterministic_time + ITERATION_WORK + WORK_PER_PAIR * result.num_variables
        if result.status == cp_model.OPTIMAL:
            target = min(target * 1.2, MAX_TARGET_PAIRS)
        else:
            target = max(target * 0.8, MIN_TARGET_PAIRS)
        if result.status not in SOLVED or result.objective <= before:
            continue
        old = assign[free]
        old_on = old[old != NO_PAIR]
        np.subtract.at(load, c.pair_resource[old_on], c.pair_units[old_on])
        assign[free] = result.chosen
        new_on = result.chosen[result.chosen != NO_PAIR]
        np.add.at(load, c.pair_resource[new_on], c.pair_units[new_on])
        objective += int(result.objective) - before
        stats.improvements += 1
        if progress:
            progress(time.perf_counter() - progress_start, float(objective), float(bound))
        if objective >= bound:
            break
    return assign, stats


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
