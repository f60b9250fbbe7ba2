"""The CP-SAT model of SPEC §3 over a subset of requests and resources (whole month or LNS part)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from solvers.compiled import NO_PAIR, CompiledInstance

# CP-SAT statuses that carry a usable solution.
SOLVED = (cp_model.OPTIMAL, cp_model.FEASIBLE)


@dataclass
class SubSolve:
    """Result of one CP-SAT solve over `requests`: their new pairs and the solve's figures."""

    status: cp_model.CpSolverStatus
    requests: np.ndarray
    chosen: np.ndarray  # pair index per request in `requests`, NO_PAIR when unallocated
    objective: float  # of the sub-model only (sum of chosen pair values)
    bound: float  # of the sub-model only
    deterministic_time: float
    wall_seconds: float
    num_variables: int
    num_constraints: int
    build_seconds: float = 0.0  # building the model and its hint (inside wall_seconds)
    reached_target: bool = False  # stopped because the objective reached solve_part's stop_at


@dataclass
class SearchLimits:
    """CP-SAT limits.

    deterministic=True: the deterministic time decides the result (one CP-SAT worker), the wall
    clock is only a safety net, so runs repeat exactly.
    deterministic=False: the wall clock decides and workers > 1 run CP-SAT's parallel portfolio
    (much stronger on tight months, but two runs may differ).
    """

    deterministic_time: float
    wall_seconds: float
    seed: int
    workers: int = 1
    deterministic: bool = True
    first_solution: bool = False  # stop at the first solution (feasibility search)
    gap_limit: float = 0.0  # absolute gap (objective units) at which CP-SAT stops: a share of the tolerance
    presolve: bool = True  # off for the LNS's small re-solves (see lns.SUB_PRESOLVE)


def sub_pairs(c: CompiledInstance, requests: np.ndarray, resource_mask: np.ndarray | None) -> np.ndarray:
    """Pair indices of `requests` (sorted), restricted to resources in `resource_mask`."""
    starts = c.pair_request_start[requests]
    sizes = c.pair_request_start[requests + 1] - starts
    total = int(sizes.sum())
    offsets = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    pairs = np.repeat(starts, sizes) + offsets
    if resource_mask is not None:
        pairs = pairs[resource_mask[c.pair_resource[pairs]]]
    return pairs


class _Watch(cp_model.CpSolverSolutionCallback):
    """At each improving solution: report (seconds, objective, bound) of the whole month, and stop
    the search once the objective reaches `stop_at` (a bound known outside CP-SAT less the slack)."""

    def __init__(
        self, report: Callable[[float, float, float], None] | None, offset: float, bound_offset: float,
        start: float, stop_at: float | None,
    ):
        super().__init__()
        self._report, self._offset, self._bound_offset, self._start = report, offset, bound_offset, start
        self._stop_at = stop_at
        self.stopped_at_target = False

    def on_solution_callback(self) -> None:
        if self._report is not None:
            self._report(
                time.perf_counter() - self._start,
                self.objective_value + self._offset,
                self.best_objective_bound + self._bound_offset,
            )
        if self._stop_at is not None and self.objective_value >= self._stop_at:
            self.stopped_at_target = True
            self.stop_search()


@dataclass
class PartModel:
    """The CP-SAT model over some requests: Boolean variable k is pair `pairs[k]` (sorted by request)."""

    model: cp_model.CpModel
    pairs: np.ndarray
    num_constraints: int

    def taken(self, solver: cp_model.CpSolver) -> np.ndarray:
        """Which pairs the solver's solution takes (one bool per pair)."""
        n = len(self.pairs)
        if not n:
            return np.zeros(0, dtype=bool)
        return np.fromiter(solver.response_proto.solution, dtype=np.int64, count=n) > 0


# A model holding one 0..1 variable as CpModel.new_bool_var("") writes it; build_model copies it n
# times. The model stays alive with the module: its proto's messages are views into it.
_TEMPLATE = cp_model.CpModel()
_TEMPLATE.new_bool_var("")
_BOOL = _TEMPLATE.proto.variables[0]
_INT64_MIN = -(2**63)


def build_model(
    c: CompiledInstance,
    requests: np.ndarray,
    room: np.ndarray,
    resource_mask: np.ndarray | None = None,
    maximise_served_must: bool = False,
) -> PartModel:
    """The model of SPEC §3 for `requests` on resources with `room` units free.

    Each request takes at most one pair (exactly one when must_allocate), a resource's pair
    units stay within its room (no row when all its pairs fit together), and the sum of pair
    values is maximised. With maximise_served_must, must_allocate becomes soft and the count
    served is maximised instead (used to name the requests that cannot be served). The
    benchmarks' plain CP-SAT baseline is this same model, solved without hint or search of ours.

    Written straight into the model's proto from arrays, the same proto CpModel's methods write
    (tests/solvers/test_model.py compares them): new_bool_var, add_hint and the expressions per
    pair were most of the cost of an LNS re-solve of a few hundred pairs.
    """
    pairs = sub_pairs(c, requests, resource_mask)
    model = cp_model.CpModel()
    proto = model.proto
    n = len(pairs)
    proto.variables.extend([_BOOL] * n)
    pair_request = c.pair_request[pairs]
    # Groups of consecutive pairs of the same request.
    bounds = np.flatnonzero(np.diff(pair_request)) + 1 if n else np.array([], dtype=int)
    group_start = np.concatenate(([0], bounds)).tolist() if n else []
    group_end = np.concatenate((bounds, [n])).tolist() if n else []
    # must_allocate of each group's request (not of the whole month: an LNS re-solve of a few
    # hundred pairs must not pay for a million requests).
    must = c.must_allocate[pair_request[group_start]].tolist() if n else []
    num_constraints = 0
    soft_must: list[range] = []
    for lo, hi, is_must in zip(group_start, group_end, must):
        constraint = proto.constraints.add()
        if is_must and not maximise_served_must:
            constraint.exactly_one.literals.extend(range(lo, hi))
        else:
            constraint.at_most_one.literals.extend(range(lo, hi))
            if is_must:
                soft_must.append(range(lo, hi))
        num_constraints += 1
    pair_resource = c.pair_resource[pairs]
    units = c.pair_units[pairs]
    order = np.argsort(pair_resource, kind="stable")
    resource_bounds = np.flatnonzero(np.diff(pair_resource[order])) + 1 if n else np.array([], dtype=int)
    for block in np.split(order, resource_bounds) if n else []:
        r = int(pair_resource[block[0]])
        if int(units[block].sum()) <= room[r]:
            continue
        linear = proto.constraints.add().linear
        linear.vars.extend(block.tolist())
        linear.coeffs.extend(units[block].tolist())
        linear.domain.extend([_INT64_MIN, int(room[r])])
        num_constraints += 1
    # Maximise: CP-SAT minimises the negated sum, scaled by -1.
    if maximise_served_must:
        terms = [k for group in soft_must for k in group]
        coeffs = [1] * len(terms)
    else:
        values = c.pair_value[pairs]
        kept = np.flatnonzero(values)
        terms, coeffs = kept.tolist(), values[kept].tolist()
    proto.objective.vars.extend(terms)
    proto.objective.coeffs.extend([-v for v in coeffs])
    proto.objective.scaling_factor = -1
    return PartModel(model=model, pairs=pairs, num_constraints=num_constraints)


def solve_part(
    c: CompiledInstance,
    requests: np.ndarray,
    room: np.ndarray,
    limits: SearchLimits,
    resource_mask: np.ndarray | None = None,
    hint: np.ndarray | None = None,
    progress: Callable[[float, float, float], None] | None = None,
    progress_offset: float = 0.0,
    progress_start: float = 0.0,
    maximise_served_must: bool = False,
    progress_bound_offset: float | None = None,
    stop_at: float | None = None,
) -> SubSolve:
    """Solve build_model()'s model for `requests`, hinted with `hint` (pair per request).

    progress gets the sub-model's objective plus progress_offset and its bound plus
    progress_bound_offset (default progress_offset). The search stops at the first solution
    worth `stop_at` or more (then reported as SubSolve.reached_target).
    """
    started = time.perf_counter()
    built = build_model(c, requests, room, resource_mask, maximise_served_must)
    model, pairs = built.model, built.pairs
    n, num_constraints = len(pairs), built.num_constraints
    pair_request = c.pair_request[pairs]
    if hint is not None and n:
        hinted = hint[pair_request] == pairs
        model.proto.solution_hint.vars.extend(range(n))
        model.proto.solution_hint.values.extend(hinted.astype(np.int64).tolist())
    build_seconds = time.perf_counter() - started

    solver = cp_model.CpSolver()
    if limits.deterministic:
        solver.parameters.max_deterministic_time = float(limits.deterministic_time)
    solver.parameters.max_time_in_seconds = float(max(limits.wall_seconds, 0.01))
    solver.parameters.random_seed = int(limits.seed)
    # Deterministic mode runs one CP-SAT worker: OR-Tools 9.15's interleaved (deterministic
    # parallel) search aborted the whole process (CHECK "solution->size() ==
    # postsolve_mapping.size()", SIGABRT) when its wall-clock limit struck, on demo-month parts with
    # a 0.2 s share under load; one worker is deterministic too. The wall clock mode keeps N workers.
    solver.parameters.num_workers = 1 if limits.deterministic else int(limits.workers)
    solver.parameters.stop_after_first_solution = limits.first_solution
    solver.parameters.cp_model_presolve = limits.presolve
    # Stop once the solution is proven within the gap limit (CP-SAT then reports OPTIMAL; the
    # bound it returns is the true one).
    solver.parameters.absolute_gap_limit = float(limits.gap_limit)
    bound_offset = progress_offset if progress_bound_offset is None else progress_bound_offset
    callback = (_Watch(progress, progress_offset, bound_offset, progress_start, stop_at)
                if progress or stop_at is not None else None)
    status = solver.solve(model, callback)
    chosen = np.full(len(requests), NO_PAIR, dtype=np.int64)
    objective = 0.0
    # Without a solution the response's bound may be unset (0 when stopped inside presolve).
    bound = math.inf
    if status in SOLVED:
        picked = pairs[built.taken(solver)]
        chosen[np.searchsorted(requests, c.pair_request[picked])] = picked
        objective, bound = solver.objective_value, solver.best_objective_bound
    return SubSolve(
        status=status,
        requests=requests,
        chosen=chosen,
        objective=objective,
        bound=bound,
        deterministic_time=solver.deterministic_time,
        wall_seconds=time.perf_counter() - started,
        num_variables=n,
        num_constraints=num_constraints,
        build_seconds=build_seconds,
        reached_target=callback is not None and callback.stopped_at_target,
    )
