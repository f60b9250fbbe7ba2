"""solve(): greedy warm start, then each independent component of the month by CP-SAT (LNS when huge)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from ortools.sat.python import cp_model
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from solvers import tabu
from solvers.bound import LpRelaxation, lp_relaxation
from solvers.compiled import NO_PAIR, CompiledInstance, compile_instance
from solvers.cpsat import SOLVED, SearchLimits, SubSolve, solve_part, sub_pairs
from solvers.explain import allocation_table
from solvers.greedy import greedy_fill, initial_assignment, request_best_value_and_units
from solvers.lns import improve
from solvers.schema import AllocationInstance, Proposal, SolverParams

# Components up to this many pairs get one CP-SAT model (hinted with the greedy) for their whole
# share of the time; larger ones get LP rounding plus LNS.
FULL_MODEL_MAX_PAIRS = 150_000
# The wall clock stops a deterministic run only past this multiple of the time limit (a loaded
# machine); before that, deterministic limits alone decide, so runs repeat exactly.
WALL_SAFETY = 1.2
# A month where no allocation serving every must_allocate request is found within the time
# limit keeps searching for a first one up to this multiple of the limit before giving up.
FEASIBILITY_SAFETY = 2.0
# Wall time kept back for the allocation table and explanations, per request.
EXPLAIN_SECONDS_PER_REQUEST = 2e-5
# Share of a large component's time given to placing its must_allocate requests first.
MUST_SHARE = 0.5
# Share of a component's time CP-SAT gets first (with and without must_allocate requests); the
# rest goes to LP rounding and LNS unless CP-SAT proves the component optimal.
CPSAT_SHARE_WITH_MUST = 0.2
CPSAT_SHARE_WITHOUT_MUST = 0.1
# LNS is skipped when less than this share of the component's time is left after CP-SAT.
MIN_LNS_SHARE = 0.05
# Deterministic time of one LNS re-solve. Measured at 20 s: tight all-must_allocate months (GAP
# types D) gain from larger re-solves (chu d20100 1.37 % -> 1.04 %, yagiura d40400 1.33 % ->
# 0.95 % with 0.05), months without must_allocate from many small ones (0.02; 0.1 was worse).
LNS_SUB_TIME = 0.02
LNS_SUB_TIME_WITH_MUST = 0.05
# Tight components (at least TABU_MIN_MUST_SHARE of their requests must_allocate, at most
# TABU_MAX_REQUESTS requests) are improved by a tabu search (solvers/tabu.py) instead of the LNS:
# it finds the long chains of moves that exact re-solves of a few resources miss. Measured at
# 20 s on five GAP type D instances: mean gap 0.82 % (LNS) -> 0.54 %, worst 1.05 % -> 0.79 %;
# LNS then tabu, half each, was worse than the tabu alone.
TABU_MAX_REQUESTS = 2000
TABU_MIN_MUST_SHARE = 0.5
# Deterministic work charged for the LP relaxation, per pair (deterministic mode only).
LP_WORK_PER_PAIR = 5e-6

Progress = Callable[[float, float, float], None]


class InfeasibleError(RuntimeError):
    """must_allocate requests that no allocation can serve (proven by CP-SAT); request_ids names them."""

    def __init__(self, message: str, request_ids: list[str]):
        super().__init__(message)
        self.request_ids = request_ids


class NoSolutionError(RuntimeError):
    """No allocation serving every must_allocate request found in time (not proven infeasible)."""

    def __init__(self, message: str, request_ids: list[str]):
        super().__init__(message)
        self.request_ids = request_ids


@dataclass
class Budget:
    """The time left for the search: deterministic work (exact repeats) or the wall clock."""

    deterministic: bool
    started: float
    wall_end: float  # when the search should be over (wall mode), before explanations
    safety_end: float  # the wall clock's hard stop
    work: float = math.inf  # deterministic mode: work units left

    def left(self) -> float:
        if self.deterministic:
            return max(self.work, 0.0)
        return max(self.wall_end - time.perf_counter(), 0.0)

    def limits(self, share: float, params: SolverParams) -> SearchLimits:
        # interleave_search runs the workers in turn, so each gets its part of the share.
        return SearchLimits(
            deterministic_time=max(share / max(params.workers, 1), 0.01),
            wall_seconds=max(share if not self.deterministic else self.safety_end - time.perf_counter(), 0.01),
            seed=params.seed,
            workers=params.workers,
            deterministic=self.deterministic,
        )

    def charge(self, work: float) -> None:
        self.work -= work


def solve(instance: AllocationInstance, params: SolverParams, progress: Progress | None = None) -> Proposal:
    """Allocate the month (SPEC §3); raise InfeasibleError when must_allocate provably cannot be met."""
    started = time.perf_counter()
    c = compile_instance(instance, params)
    _require_pairs_for_must_allocate(c)
    deterministic = params.deterministic_work is not None
    budget = Budget(
        deterministic=deterministic,
        started=started,
        wall_end=started + params.time_limit_s - EXPLAIN_SECONDS_PER_REQUEST * c.num_requests,
        safety_end=started + params.time_limit_s * WALL_SAFETY,
        work=params.deterministic_work if deterministic else math.inf,
    )

    pinned = initial_assignment(c)
    assign = greedy_fill(c, pinned)
    room = c.capacity - c.load(pinned)
    free = np.flatnonzero((c.pinned_pair == NO_PAIR) & (np.diff(c.pair_request_start) > 0))
    pinned_value = float(c.objective(pinned))
    trivial = _trivial_bound(c)
    parts = components(c, free)
    part_pairs = [int(np.diff(c.pair_request_start)[part].sum()) for part in parts]
    part_bound = [float(trivial[part].sum()) for part in parts]
    proven = [False] * len(parts)
    model_size = {"variables": 0, "constraints": 0, "pairs": c.num_pairs, "components": len(parts)}
    relaxation: LpRelaxation | None = None  # of the whole month, solved when first needed

    for k, part in enumerate(parts):
        part_started, work_before = time.perf_counter(), budget.left()
        share = budget.left() * part_pairs[k] / max(sum(part_pairs[k:]), 1)
        offset = float(c.objective(assign)) - float(c.pair_value[_chosen(assign[part])].sum())
        bound_offset = pinned_value + sum(part_bound) - part_bound[k]
        must = part[c.must_allocate[part]]
        if part_pairs[k] <= FULL_MODEL_MAX_PAIRS:
            # must_allocate makes a component tight: CP-SAT's portfolio is best at finding and
            # improving feasible allocations there. Without it, CP-SAT only gets a first look (it
            # proves small components optimal) and the LNS below does the improving.
            cp_share = share * (CPSAT_SHARE_WITH_MUST if len(must) else CPSAT_SHARE_WITHOUT_MUST)
            result = _solve_or_explain(c, part, room, budget, cp_share, params, assign,
                                       progress, offset, bound_offset)
            assign[part] = result.chosen
            part_bound[k] = min(part_bound[k], result.bound)
            proven[k] = result.status == cp_model.OPTIMAL
            model_size["variables"] += result.num_variables
            model_size["constraints"] += result.num_constraints
            used = time.perf_counter() - part_started if not deterministic else work_before - budget.left()
            if proven[k] or share - used < MIN_LNS_SHARE * share:
                continue
        elif (assign[must] == NO_PAIR).any():
            result = _solve_or_explain(c, must, room, budget, share * MUST_SHARE, params, assign)
            assign[must] = result.chosen
            assign = greedy_fill(c, assign, requests=part)
        # LP rounding (the LP optimum also bounds the component), then LNS on its resources.
        if relaxation is None:
            relaxation = lp_relaxation(c, max(budget.safety_end - time.perf_counter(), 1.0))
            budget.charge(LP_WORK_PER_PAIR * c.num_pairs)
        pairs = sub_pairs(c, part, None)
        part_bound[k] = min(part_bound[k], float(c.pair_value[pairs] @ relaxation.x[pairs]))
        # The LNS (or the tabu search) starts from the LP rounding even when it is worth less than
        # the CP-SAT or greedy allocation: measured, the LNS ends much higher from there (0.16 % vs
        # 0.44 % below the LP on a 936 x 50 component in 3 s). The better of the two is kept.
        rounded = _lp_rounding(c, assign, part, pairs, relaxation)
        fallback = assign
        if not (c.must_allocate[part] & (rounded[part] == NO_PAIR)).any():
            assign = rounded
        if deterministic:
            work, deadline = share - (work_before - budget.left()), budget.safety_end
        else:
            work, deadline = math.inf, part_started + share
        if _tight(part, must):
            outside = float(c.objective(assign)) - float(c.pair_value[_chosen(assign[part])].sum())
            bound_now = pinned_value + sum(part_bound)
            report = None
            if progress:
                def report(value: int) -> None:
                    progress(time.perf_counter() - started, outside + value, bound_now)
            # One search per worker from the LP rounding (or the CP-SAT allocation when the rounding
            # leaves a must_allocate request out), each with its own penalty profile.
            assign, spent = tabu.improve_component(c, assign, part, pairs, room, max(work, 0.0),
                                                   deadline, params.seed, report, threads=params.workers)
            budget.charge(spent)
        else:
            assign, stats = improve(c, assign, max(work, 0.0), deadline, params.seed, progress, started,
                                    pinned_value + sum(part_bound), resources=np.unique(c.pair_resource[pairs]),
                                    sub_deterministic_time=LNS_SUB_TIME_WITH_MUST if len(must) else LNS_SUB_TIME)
            budget.charge(stats.work)
        if c.objective(fallback) > c.objective(assign):
            assign = fallback

    assign = greedy_fill(c, assign)  # anything that still fits and adds value
    objective = float(c.objective(assign))
    bound = pinned_value + float(sum(part_bound))
    if all(proven) or objective >= bound:
        bound, status = objective, "OPTIMAL"
    else:
        status = "FEASIBLE"
    if progress:
        progress(time.perf_counter() - started, objective, bound)
    return Proposal(
        allocations=allocation_table(instance, c, assign),
        objective=objective,
        bound=float(bound),
        gap=relative_gap(objective, bound),
        status=status,
        solve_seconds=time.perf_counter() - started,
        model_size=model_size,
        parts=1,
        conflicts=list(c.conflicts),
    )


def _tight(part: np.ndarray, must: np.ndarray) -> bool:
    """Whether a component gets the tabu search rather than the LNS (see TABU_MAX_REQUESTS)."""
    return 0 < len(part) <= TABU_MAX_REQUESTS and len(must) >= TABU_MIN_MUST_SHARE * len(part)


def components(c: CompiledInstance, requests: np.ndarray) -> list[np.ndarray]:
    """`requests` grouped into independent components (no shared resource), smallest first.

    Small components usually finish at a proven optimum well inside their share of the time, and
    what they leave flows to the larger ones solved after them.
    """
    if len(requests) == 0:
        return []
    pairs = sub_pairs(c, requests, None)
    n = c.num_requests
    graph = coo_matrix(
        (np.ones(len(pairs)), (c.pair_request[pairs], n + c.pair_resource[pairs])),
        shape=(n + len(c.capacity), n + len(c.capacity)),
    )
    _, label = connected_components(graph, directed=False)
    request_label = label[requests]
    order = np.lexsort((requests, request_label))
    grouped = requests[order]
    cuts = np.flatnonzero(np.diff(request_label[order])) + 1
    parts = np.split(grouped, cuts)
    sizes = [int(np.diff(c.pair_request_start)[part].sum()) for part in parts]
    ranked = sorted(range(len(parts)), key=lambda k: (sizes[k], int(parts[k][0])))
    return [parts[k] for k in ranked]


def relative_gap(objective: float, bound: float) -> float:
    """(bound - objective) / max(1, |bound|); inf when there is no bound."""
    if math.isinf(bound):
        return math.inf
    return max(bound - objective, 0.0) / max(1.0, abs(bound))


def _chosen(assigned: np.ndarray) -> np.ndarray:
    """The pairs of an assignment slice, without NO_PAIR."""
    return assigned[assigned != NO_PAIR]


def _trivial_bound(c: CompiledInstance) -> np.ndarray:
    """Per request, the most it can add: its best pair (must_allocate), or that or nothing."""
    best_value, _ = request_best_value_and_units(c)
    return np.where(c.must_allocate, best_value, np.maximum(best_value, 0.0))


def _lp_rounding(
    c: CompiledInstance, assign: np.ndarray, part: np.ndarray, pairs: np.ndarray, relaxation: LpRelaxation
) -> np.ndarray:
    """The LP's integral pairs of `part` (they fit together), the rest filled greedily at LP prices."""
    rounded = assign.copy()
    rounded[part] = NO_PAIR
    integral = pairs[relaxation.x[pairs] > 1 - 1e-6]
    rounded[c.pair_request[integral]] = integral
    return greedy_fill(c, rounded, requests=part, resource_price=relaxation.resource_dual)


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
    budget: Budget,
    share: float,
    params: SolverParams,
    hint: np.ndarray,
    progress: Progress | None = None,
    offset: float = 0.0,
    bound_offset: float = 0.0,
) -> SubSolve:
    """CP-SAT on `requests`; InfeasibleError only when CP-SAT proves must_allocate cannot be met."""
    result = solve_part(c, requests, room, budget.limits(share, params), hint=hint, progress=progress,
                        progress_offset=offset, progress_start=budget.started,
                        progress_bound_offset=bound_offset)
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
