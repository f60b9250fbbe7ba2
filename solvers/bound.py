"""LP relaxation bound of the allocation model (HiGHS on sparse matrices), the yardstick for large months."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import csr_matrix

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
    """Solve the LP relaxation with HiGHS; rows and columns are built as whole arrays, no Python loops."""
    n_pairs, n_resources = c.num_pairs, len(c.capacity)
    if n_pairs == 0:
        return LpRelaxation(float(c.objective_offset), np.zeros(0), np.zeros(n_resources))
    columns = np.arange(n_pairs)
    # One row per request (sum <= 1, or == 1 when must_allocate) and one per resource
    # (sum of pair units <= capacity); a resource whose pairs all fit together needs no row.
    resource_total = np.bincount(c.pair_resource, weights=c.pair_units, minlength=n_resources)
    binding = resource_total > c.capacity
    capacity_rows = np.cumsum(binding) - 1
    on_binding = binding[c.pair_resource]
    must = c.must_allocate[c.pair_request]
    optional_rows = np.cumsum(~c.must_allocate) - 1
    must_rows = np.cumsum(c.must_allocate) - 1
    n_optional, n_must, n_capacity = int((~c.must_allocate).sum()), int(c.must_allocate.sum()), int(binding.sum())
    a_ub = csr_matrix(
        (
            np.concatenate([np.ones(int((~must).sum())), c.pair_units[on_binding].astype(float)]),
            (
                np.concatenate([optional_rows[c.pair_request[~must]], n_optional + capacity_rows[c.pair_resource[on_binding]]]),
                np.concatenate([columns[~must], columns[on_binding]]),
            ),
        ),
        shape=(n_optional + n_capacity, n_pairs),
    )
    b_ub = np.concatenate([np.ones(n_optional), c.capacity[binding].astype(float)])
    a_eq = b_eq = None
    if n_must:
        a_eq = csr_matrix(
            (np.ones(int(must.sum())), (must_rows[c.pair_request[must]], columns[must])), shape=(n_must, n_pairs)
        )
        b_eq = np.ones(n_must)
    lower = np.zeros(n_pairs)
    lower[c.pinned_pair[c.pinned_pair != NO_PAIR]] = 1.0
    result = linprog(
        -c.pair_value.astype(float),
        A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq,
        bounds=np.column_stack([lower, np.ones(n_pairs)]),
        method="highs",
        options={"time_limit": float(time_limit_s), "presolve": True},
    )
    if result.status != 0:
        raise BoundError(f"LP relaxation not solved to optimality (HiGHS: {result.message})")
    dual = np.zeros(n_resources)
    # HiGHS reports d(objective)/d(b) of the minimisation; the capacity price is its negation.
    dual[binding] = -np.asarray(result.ineqlin.marginals)[n_optional:]
    return LpRelaxation(bound=-float(result.fun) + c.objective_offset, x=np.asarray(result.x), resource_dual=dual)
