"""LP relaxation bound of the allocation model (GLOP), the yardstick for large months."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.linear_solver import pywraplp

from solvers.compiled import NO_PAIR, CompiledInstance, compile_instance
from solvers.schema import AllocationInstance, SolverParams


class BoundError(RuntimeError):
    """The LP relaxation could not be solved (infeasible or out of time)."""


def lp_bound(instance: AllocationInstance, params: SolverParams, time_limit_s: float = 600.0) -> float:
    """Upper bound on the objective: the optimum of the LP relaxation (x in [0, 1])."""
    return compiled_lp_bound(compile_instance(instance, params), time_limit_s)


@dataclass
class LpRelaxation:
    """Optimum of the LP relaxation: bound, pair values x and resource capacity duals."""

    bound: float
    x: np.ndarray
    resource_dual: np.ndarray


def compiled_lp_bound(c: CompiledInstance, time_limit_s: float = 600.0) -> float:
    """LP relaxation bound of a compiled instance."""
    return lp_relaxation(c, time_limit_s).bound


def lp_relaxation(c: CompiledInstance, time_limit_s: float = 600.0) -> LpRelaxation:
    """Solve the LP relaxation with GLOP."""
    solver = pywraplp.Solver.CreateSolver("GLOP")
    solver.SetTimeLimit(int(time_limit_s * 1000))
    pinned = np.zeros(c.num_pairs, dtype=bool)
    pinned[c.pinned_pair[c.pinned_pair != NO_PAIR]] = True
    x = [solver.NumVar(1.0 if fixed else 0.0, 1.0, "") for fixed in pinned.tolist()]
    objective = solver.Objective()
    for var, value in zip(x, c.pair_value.tolist()):
        objective.SetCoefficient(var, float(value))
    objective.SetMaximization()
    starts = c.pair_request_start.tolist()
    must = c.must_allocate.tolist()
    for i in range(c.num_requests):
        lo, hi = starts[i], starts[i + 1]
        if hi - lo <= 1 and not must[i]:
            continue  # x <= 1 already
        row = solver.Constraint(1.0 if must[i] else 0.0, 1.0)
        for p in range(lo, hi):
            row.SetCoefficient(x[p], 1.0)
    units = c.pair_units.tolist()
    resource_start = c.resource_start.tolist()
    resource_pairs = c.resource_pairs.tolist()
    capacity_rows = {}
    for r, capacity in enumerate(c.capacity.tolist()):
        block = resource_pairs[resource_start[r] : resource_start[r + 1]]
        if sum(units[p] for p in block) <= capacity:
            continue
        row = capacity_rows[r] = solver.Constraint(0.0, float(capacity))
        for p in block:
            row.SetCoefficient(x[p], float(units[p]))
    status = solver.Solve()
    if status != pywraplp.Solver.OPTIMAL:
        raise BoundError(f"LP relaxation not solved to optimality (GLOP status {status})")
    dual = np.zeros(len(c.capacity))
    for r, row in capacity_rows.items():
        dual[r] = row.dual_value()
    return LpRelaxation(
        bound=float(objective.Value()) + c.objective_offset,
        x=np.array([v.solution_value() for v in x]),
        resource_dual=dual,
    )
