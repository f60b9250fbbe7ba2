"""solve(): greedy warm start, CP-SAT on the whole month when it fits, LNS, then explanations."""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import pandas as pd
from ortools.sat.python import cp_model

from solvers.compiled import NO_PAIR, CompiledInstance, compile_instance
from solvers.bound import lp_relaxation
from solvers.cpsat import SOLVED, SearchLimits, solve_part
from solvers.explain import allocation_table
from solvers.greedy import greedy_fill, initial_assignment
from solvers.lns import improve
from solvers.schema import AllocationInstance, Proposal, SolverParams

# Months up to this many pairs get a CP-SAT model of the whole month before LNS.
FULL_MODEL_MAX_PAIRS = 150_000
# Deterministic work units per second of params.time_limit_s (calibrated on 2 cores so that a
# run uses about 80 % of its time limit; the wall clock is only a safety net).
WORK_PER_SECOND = 0.5
# Deterministic work charged for the LP relaxation, per pair.
LP_WORK_PER_PAIR = 5e-6
# The wall clock stops the search only past this multiple of the time limit (a loaded machine);
# before that, deterministic limits alone decide, so runs repeat exactly.
WALL_SAFETY = 1.2
# Share of the work budget given to the whole-month CP-SAT model (divided by params.workers:
# with interleave_search the deterministic time of every worker is counted).
FULL_MODEL_SHARE = 0.5

Progress = Callable[[float, float, float], None]


class InfeasibleError(RuntimeError):
    """must_allocate requests that no allocation can serve; request_ids names them."""

    def __init__(self, message: str, request_ids: list[str]):
        super().__init__(message)
        self.request_ids = request_ids


def solve(instance: AllocationInstance, params: SolverParams, progress: Progress | None = None) -> Proposal:
    """Allocate the month (SPEC §3); raise InfeasibleError when must_allocate cannot be met."""
    started = time.perf_counter()
    deadline = started + params.time_limit_s * WALL_SAFETY
    work_budget = (
        params.deterministic_work
        if params.deterministic_work is not None
        else params.time_limit_s * WORK_PER_SECOND
    )
    c = compile_instance(instance, params)
    _require_pairs_for_must_allocate(c)

    assign = greedy_fill(c, initial_assignment(c))
    room = c.capacity - c.load(initial_assignment(c))
    free = np.flatnonzero((c.pinned_pair == NO_PAIR) & (np.diff(c.pair_request_start) > 0))
    pinned_value = c.objective(initial_assignment(c))
    bound = math.inf
    proven = False
    work = 0.0
    model_size = {"variables": 0, "constraints": 0, "pairs": c.num_pairs}

    must_unserved = c.must_allocate & (assign == NO_PAIR) & ~c.pin_dropped & ~c.excluded
    if must_unserved.any() and c.num_pairs > FULL_MODEL_MAX_PAIRS:
        # Too big for one model: place the must_allocate requests first, then fill greedily.
        must = free[c.must_allocate[free]]
        result = _solve_or_explain(c, must, room, work_budget * 0.5, deadline, params, assign)
        work += result.deterministic_time
        assign[must] = result.chosen
        assign = greedy_fill(c, assign)
    elif c.num_pairs <= FULL_MODEL_MAX_PAIRS:
        result = _solve_or_explain(
            c, free, room, work_budget * FULL_MODEL_SHARE / max(params.workers, 1), deadline, params,
            assign, progress, started, pinned_value,
        )
        work += result.deterministic_time
        assign[free] = result.chosen
        bound = result.bound + pinned_value
        proven = result.status == cp_model.OPTIMAL
        model_size.update(variables=result.num_variables, constraints=result.num_constraints)

    if not proven and c.num_pairs > FULL_MODEL_MAX_PAIRS:
        # Large month: round the LP relaxation (its integral part is feasible), fill the rest
        # greedily at LP prices; the LP optimum is also the bound.
        relaxation = lp_relaxation(c, max(deadline - time.perf_counter(), 1.0))
        work += LP_WORK_PER_PAIR * c.num_pairs
        bound = relaxation.bound
        rounded = initial_assignment(c)
        integral = np.flatnonzero(relaxation.x > 1 - 1e-6)
        integral = integral[rounded[c.pair_request[integral]] == NO_PAIR]
        rounded[c.pair_request[integral]] = integral
        rounded = greedy_fill(c, rounded, resource_price=relaxation.resource_dual)
        serves_must = not (c.must_allocate & (rounded == NO_PAIR) & (np.diff(c.pair_request_start) > 0)).any()
        if serves_must and c.objective(rounded) > c.objective(assign):
            assign = rounded
    if not proven:
        assign, _ = improve(
            c, assign, max(work_budget - work, 0.0), deadline, params.seed, progress, started, bound
        )
        assign = greedy_fill(c, assign)  # anything that still fits and adds value
    objective = float(c.objective(assign))
    if proven or objective >= bound:
        bound, proven = objective, True
    if progress:
        progress(time.perf_counter() - started, objective, bound)
    return Proposal(
        allocations=allocation_table(instance, c, assign),
        objective=objective,
        bound=float(bound),
        gap=relative_gap(objective, bound),
        status="OPTIMAL" if proven else "FEASIBLE",
        solve_seconds=time.perf_counter() - started,
        model_size=model_size,
        parts=1,
        conflicts=list(c.conflicts),
    )


def relative_gap(objective: float, bound: float) -> float:
    """(bound - objective) / max(1, |bound|); inf when there is no bound."""
    if math.isinf(bound):
        return math.inf
    return max(bound - objective, 0.0) / max(1.0, abs(bound))


def _require_pairs_for_must_allocate(c: CompiledInstance) -> None:
    """Raise when a must_allocate request has no eligible resource at all."""
    stranded = c.must_allocate & ~c.excluded & ~c.pin_dropped & (np.diff(c.pair_request_start) == 0)
    if stranded.any():
        ids = sorted(c.request_ids[stranded].tolist())
        raise InfeasibleError(
            f"{len(ids)} must_allocate request(s) have no eligible resource: {', '.join(ids[:20])}",
            ids,
        )


def _solve_or_explain(
    c: CompiledInstance,
    requests: np.ndarray,
    room: np.ndarray,
    deterministic_time: float,
    deadline: float,
    params: SolverParams,
    hint: np.ndarray,
    progress: Progress | None = None,
    started: float = 0.0,
    offset: float = 0.0,
):
    """Solve the model for `requests`; when infeasible, name the must_allocate requests that cannot fit."""
    limits = SearchLimits(
        deterministic_time=deterministic_time,
        wall_seconds=max(deadline - time.perf_counter(), 0.01),
        seed=params.seed,
        workers=params.workers,
    )
    result = solve_part(c, requests, room, limits, hint=hint, progress=progress,
                        progress_offset=offset, progress_start=started)
    if result.status in SOLVED:
        return result
    if result.status == cp_model.INFEASIBLE:
        relaxed = solve_part(c, requests, room, limits, hint=hint, maximise_served_must=True)
        served = np.zeros(c.num_requests, dtype=bool)
        served[requests[relaxed.chosen != NO_PAIR]] = True
        must = requests[c.must_allocate[requests] & ~served[requests]]
        ids = sorted(c.request_ids[must].tolist())
        raise InfeasibleError(
            "must_allocate requests cannot all be served within capacity; "
            f"at least these {len(ids)} cannot: {', '.join(ids[:20])}",
            ids,
        )
    # No solution within the limits: keep the greedy one if it serves every must_allocate request.
    unserved = requests[c.must_allocate[requests] & (hint[requests] == NO_PAIR)]
    if len(unserved) and time.perf_counter() < deadline:
        # No feasible allocation yet: searching longer beats failing early.
        retry = SearchLimits(
            deterministic_time=deterministic_time * 4,
            wall_seconds=max(deadline - time.perf_counter(), 0.01),
            seed=params.seed,
            workers=params.workers,
        )
        result = solve_part(c, requests, room, retry, hint=hint, progress=progress,
                            progress_offset=offset, progress_start=started)
        if result.status in SOLVED:
            return result
    if len(unserved):
        ids = sorted(c.request_ids[unserved].tolist())
        raise InfeasibleError(
            f"no allocation serving every must_allocate request found within {params.time_limit_s} s; "
            f"unplaced: {', '.join(ids[:20])}",
            ids,
        )
    return type(result)(
        status=cp_model.FEASIBLE, requests=requests, chosen=hint[requests], objective=0.0,
        bound=math.inf, deterministic_time=result.deterministic_time,
        wall_seconds=result.wall_seconds, num_variables=result.num_variables,
        num_constraints=result.num_constraints,
    )
