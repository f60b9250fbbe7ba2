"""CP-SAT on a part of the month, and the errors when its must_allocate requests cannot be served."""

from __future__ import annotations

import time

import numpy as np
from ortools.sat.python import cp_model

from solvers.budget import Budget, Progress
from solvers.compiled import NO_PAIR, CompiledInstance
from solvers.cpsat import SOLVED, SearchLimits, SubSolve, solve_part
from solvers.schema import SolverParams

# A month where no allocation serving every must_allocate request is found within the time
# limit keeps searching for a first one up to this multiple of the limit before giving up.
FEASIBILITY_SAFETY = 2.0


class UnservedError(RuntimeError):
    """must_allocate requests left without a resource; request_ids names them."""

    def __init__(self, message: str, request_ids: list[str]):
        super().__init__(message)
        self.request_ids = request_ids


class InfeasibleError(UnservedError):
    """must_allocate requests that no allocation can serve (proven by CP-SAT)."""


class NoSolutionError(UnservedError):
    """No allocation serving every must_allocate request found in time (not proven infeasible)."""


def require_pairs_for_must_allocate(c: CompiledInstance) -> None:
    """Raise when a must_allocate request has no eligible resource at all."""
    stranded = c.must_allocate & ~c.excluded & ~c.pin_dropped & (np.diff(c.pair_request_start) == 0)
    if stranded.any():
        ids = sorted(c.request_ids[stranded].tolist())
        raise InfeasibleError(
            f"{len(ids)} must_allocate request(s) have no eligible resource: {', '.join(ids[:20])}",
            ids,
        )


def solve_or_explain(
    c: CompiledInstance,
    requests: np.ndarray,
    room: np.ndarray,
    budget: Budget,
    share: float,
    params: SolverParams,
    hint: np.ndarray,
    progress: Progress | None = None,
    offset: float = 0.0,
    bound_offset: float = 0.0,
    gap_limit: float = 0.0,
    stop_at: float | None = None,
) -> SubSolve:
    """CP-SAT on `requests`; InfeasibleError only when CP-SAT proves must_allocate cannot be met."""
    result = solve_part(c, requests, room, budget.limits(share, params, gap_limit), hint=hint, progress=progress,
                        progress_offset=offset, progress_start=budget.started,
                        progress_bound_offset=bound_offset, stop_at=stop_at)
    budget.charge(result.deterministic_time)
    unserved = requests[c.must_allocate[requests] & (hint[requests] == NO_PAIR)]
    if result.status not in SOLVED and result.status != cp_model.INFEASIBLE and len(unserved):
        # No allocation serving every must_allocate request yet: search on for a first one (past
        # the time limit, up to FEASIBILITY_SAFETY times it) rather than fail a feasible month.
        extra = budget.started + params.time_limit_s * FEASIBILITY_SAFETY - time.perf_counter()
        if extra > 0:
            retry = SearchLimits(deterministic_time=max(share, 0.01) * 4, wall_seconds=extra, seed=params.seed,
                                 workers=params.workers, deterministic=budget.deterministic,
                                 first_solution=True)
            result = solve_part(c, requests, room, retry, hint=hint, progress=progress,
                                progress_offset=offset, progress_start=budget.started,
                                progress_bound_offset=bound_offset)
            budget.charge(result.deterministic_time)
    if result.status in SOLVED:
        return result
    if result.status == cp_model.INFEASIBLE:
        relaxed = solve_part(c, requests, room, budget.limits(max(share, 1.0), params), hint=hint,
                             maximise_served_must=True)
        served = np.zeros(c.num_requests, dtype=bool)
        served[requests[relaxed.chosen != NO_PAIR]] = True
        must = requests[c.must_allocate[requests] & ~served[requests]]
        ids = sorted(c.request_ids[must].tolist())
        raise InfeasibleError(
            "must_allocate requests cannot all be served within capacity; "
            f"at least these {len(ids)} cannot: {', '.join(ids[:20])}",
            ids,
        )
    if len(unserved):
        ids = sorted(c.request_ids[unserved].tolist())
        raise NoSolutionError(
            f"no allocation serving every must_allocate request found within "
            f"{params.time_limit_s * FEASIBILITY_SAFETY:g} s (not proven infeasible; raise time_limit_s); "
            f"unplaced by the greedy start: {', '.join(ids[:20])}",
            ids,
        )
    # No solution within the limits, but the greedy start serves every must_allocate request.
    return SubSolve(
        status=cp_model.FEASIBLE, requests=requests, chosen=hint[requests], objective=0.0,
        bound=result.bound,
        deterministic_time=result.deterministic_time, wall_seconds=result.wall_seconds,
        num_variables=result.num_variables, num_constraints=result.num_constraints,
    )
