"""Large neighbourhood search: re-solve a few related resources exactly with CP-SAT, repeat.

The neighbourhoods come from a seeded generator and each CP-SAT call runs one worker with a
deterministic time limit. In deterministic mode the iterations run in rounds of `threads`
re-solves applied in order, so the sequence repeats and the loop stops on a budget of
deterministic work. In wall-clock mode each thread picks, re-solves and applies its own
neighbourhoods without waiting for the others (the re-solves release the GIL), until the deadline.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from solvers.compiled import NO_PAIR, CompiledInstance
from solvers.cpsat import SOLVED, SearchLimits, SubSolve, solve_part
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
# Draws of a neighbourhood none of whose resources is in flight, in wall-clock mode (see _Search.next).
WHOLE_DRAWS = 8
# Resources of a component per LNS thread in wall-clock mode. The demo months (components of 3-17
# resources) reached the tolerance in 2.1-2.2 s with one thread, 3.0-3.1 s with two.
RESOURCES_PER_THREAD = 16


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
    chosen: np.ndarray
    mask: np.ndarray
    room: np.ndarray
    before: int
    seed: int


class _Search:
    """The allocation being improved, its loads, and how neighbourhoods are made and applied.

    Neighbourhoods in flight at the same time have disjoint resources and requests (`busy_*`):
    a re-solve changes only its free requests and the loads of its own resources, so each can be
    applied as it comes back, in any order.
    """

    def __init__(self, c: CompiledInstance, assign: np.ndarray, resources: np.ndarray, seed: int) -> None:
        self.c = c
        self.assign = assign.copy()
        self.movable = resources
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.stats = LnsStats()
        self.pinned = c.fixed_pair != NO_PAIR  # pins, and requests held under strict stability
        self.load = c.load(self.assign)
        self.best_value, min_units = request_best_value_and_units(c)
        self.density = self.best_value / min_units
        self.objective = c.objective(self.assign)
        self.target_pairs = float(INITIAL_TARGET_PAIRS)
        self.pairs_per_resource = np.diff(c.resource_start)
        with_pairs = np.diff(c.pair_request_start) > 0
        self.average_options = c.num_pairs / max(int(with_pairs.sum()), 1)
        # Share of a resource's pairs that belong to unallocated requests worth allocating.
        self.waiting_share = float(
            ((self.assign == NO_PAIR) & with_pairs & (self.best_value > 0)).sum()
        ) / max(int(with_pairs.sum()), 1)
        # Requests held on each resource, kept up to date as moves are applied (no pass over the month).
        self.assigned_count = np.bincount(
            c.pair_resource[self.assign[self.assign != NO_PAIR]], minlength=len(c.capacity))
        self.busy_resources = np.zeros(len(c.capacity), dtype=bool)
        self.busy_requests = np.zeros(c.num_requests, dtype=bool)

    def next(self, whole: bool = False) -> _Neighbourhood | None:
        """A neighbourhood of resources and requests not in flight (None: none was found).

        A drawn neighbourhood loses the resources in flight; with `whole`, it is drawn again
        (at most WHOLE_DRAWS times) until none of its resources is in flight instead. Cut
        neighbourhoods lose the moves they were drawn for: on the demo month's small components
        two threads cutting each other's never reached the tolerance in 30 s (one thread: 2.3 s).
        """
        activity = self.assigned_count + self.pairs_per_resource * self.waiting_share
        for _ in range(WHOLE_DRAWS if whole else 1):
            self.stats.iterations += 1
            chosen = _neighbourhood(self.c, self.rng, self.movable, activity, self.average_options,
                                    self.target_pairs)
            if not self.busy_resources[chosen].any():
                break
        if whole and self.busy_resources[chosen].any():
            return None
        chosen = chosen[~self.busy_resources[chosen]]
        if len(chosen) == 0:
            return None
        task = _build_neighbourhood(self.c, self.assign, self.load, chosen, self.best_value, self.density,
                                    self.pinned, self.target_pairs, self.busy_requests,
                                    self.seed + self.stats.iterations)
        self.busy_resources[chosen] = True
        self.busy_requests[task.free] = True
        return task

    def apply(self, task: _Neighbourhood, result: SubSolve) -> bool:
        """Take the re-solve's allocation when it gains; adapt the neighbourhood size. True: it gained."""
        self.busy_resources[task.chosen] = False
        self.busy_requests[task.free] = False
        self.stats.build_seconds += result.build_seconds
        if result.status == cp_model.OPTIMAL:
            self.target_pairs = min(self.target_pairs * 1.2, MAX_TARGET_PAIRS)
        else:
            self.target_pairs = max(self.target_pairs * 0.8, MIN_TARGET_PAIRS)
        if result.status not in SOLVED or result.objective <= task.before:
            return False
        c = self.c
        old = self.assign[task.free]
        old_on = old[old != NO_PAIR]
        np.subtract.at(self.load, c.pair_resource[old_on], c.pair_units[old_on])
        np.subtract.at(self.assigned_count, c.pair_resource[old_on], 1)
        self.assign[task.free] = result.chosen
        new_on = result.chosen[result.chosen != NO_PAIR]
        np.add.at(self.load, c.pair_resource[new_on], c.pair_units[new_on])
        np.add.at(self.assigned_count, c.pair_resource[new_on], 1)
        self.objective += int(result.objective) - task.before
        self.stats.improvements += 1
        return True


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
    re-solve gets sub_deterministic_time. With a finite `work_budget` (deterministic mode),
    `threads` neighbourhoods with disjoint resources and requests are re-solved side by side
    and applied in order, so a run repeats for a seed and budget; a round charges the budget
    its longest re-solve. With an infinite one (wall-clock mode), `threads` threads each go on
    at their own pace until `deadline`. The search stops early once the objective reaches
    `target` (default `bound`; the reported bound).
    """
    movable = np.flatnonzero(np.diff(c.resource_start) > 0)
    if resources is not None:
        movable = np.intersect1d(movable, resources)
    search = _Search(c, assign, movable, seed)
    if len(movable) == 0:
        return search.assign, search.stats
    goal = bound if target is None else target
    threads = max(int(threads), 1)

    def resolve(task: _Neighbourhood) -> SubSolve:
        return solve_part(
            c, task.free, task.room,
            SearchLimits(
                deterministic_time=min(sub_deterministic_time, max(work_budget - search.stats.work, 0.01)),
                wall_seconds=max(deadline - time.perf_counter(), 0.01),
                seed=task.seed,
                presolve=SUB_PRESOLVE,
            ),
            resource_mask=task.mask,
            hint=search.assign,
        )

    def report() -> None:
        if progress:
            progress(time.perf_counter() - progress_start, float(search.objective), float(bound))

    def going_on() -> bool:
        return search.stats.work < work_budget and time.perf_counter() < deadline and search.objective < goal

    if math.isinf(work_budget):
        # Wall clock: a thread per RESOURCES_PER_THREAD resources at most (on fewer, the threads'
        # neighbourhoods mostly overlap and they wait for each other).
        threads = max(min(threads, len(movable) // RESOURCES_PER_THREAD), 1)
        _run_asynchronous(search, resolve, going_on, report, threads)
    else:
        _run_rounds(search, resolve, going_on, report, threads)
    return search.assign, search.stats


def _run_rounds(search: _Search, resolve: Callable[[_Neighbourhood], SubSolve], going_on: Callable[[], bool],
                report: Callable[[], None], threads: int) -> None:
    """Deterministic: rounds of `threads` disjoint re-solves, applied in the order they were made."""
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    try:
        while going_on():
            batch = [task for task in (search.next() for _ in range(threads)) if task is not None]
            results = list(pool.map(resolve, batch)) if pool is not None and len(batch) > 1 else [
                resolve(task) for task in batch]
            search.stats.work += max((r.deterministic_time + ITERATION_WORK + WORK_PER_PAIR * r.num_variables
                                      for r in results), default=ITERATION_WORK)
            for task, result in zip(batch, results):
                if search.apply(task, result):
                    report()
    finally:
        if pool is not None:
            pool.shutdown()


def _run_asynchronous(search: _Search, resolve: Callable[[_Neighbourhood], SubSolve], going_on: Callable[[], bool],
                      report: Callable[[], None], threads: int) -> None:
    """Wall clock: each thread makes, re-solves and applies its own neighbourhoods; the shared
    state changes under one lock, the re-solves (most of the time, GIL released) run outside it."""
    changed = threading.Condition()

    def worker() -> None:
        while True:
            with changed:
                if not going_on():
                    return
                task = search.next(whole=True)
                if task is None:
                    # What it drew is in flight: wait until a re-solve comes back (spinning held
                    # the GIL that the returning thread needs: the demo month took 3.6 s, not 2.2 s).
                    changed.wait(timeout=0.05)
                    continue
            result = resolve(task)
            with changed:
                search.stats.work += result.deterministic_time + ITERATION_WORK + WORK_PER_PAIR * result.num_variables
                if search.apply(task, result):
                    report()
                changed.notify_all()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(worker) for _ in range(threads)]:
            future.result()


def _build_neighbourhood(
    c: CompiledInstance,
    assign: np.ndarray,
    load: np.ndarray,
    chosen: np.ndarray,
    best_value: np.ndarray,
    density: np.ndarray,
    pinned: np.ndarray,
    target_pairs: float,
    busy: np.ndarray,
    seed: int,
) -> _Neighbourhood:
    """The re-solve of the resources `chosen`: the requests on them and the best waiting ones.

    Requests `busy` (in another neighbourhood in flight) are left out. Work is proportional to
    the chosen resources' pairs, not to the month.
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
    waiting = waiting[(assign[waiting] == NO_PAIR) & (best_value[waiting] > 0) & ~busy[waiting]]
    max_waiting = max(int(target_pairs), 50)
    if len(waiting) > max_waiting:
        waiting = waiting[np.argsort(-density[waiting], kind="stable")[:max_waiting]]
    free = np.union1d(on_chosen, waiting)
    room = c.capacity.copy()
    room[chosen] = c.capacity[chosen] - load[chosen]
    freed = assign[on_chosen]
    np.add.at(room, c.pair_resource[freed], c.pair_units[freed])
    return _Neighbourhood(free=free, chosen=chosen, mask=mask, room=room,
                          before=int(c.pair_value[freed].sum()), seed=seed)


def _neighbourhood(
    c: CompiledInstance,
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
