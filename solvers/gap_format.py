"""Read OR-Library GAP files and map them onto the input contract (benchmarks and tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from solvers.eligibility import build_instance
from solvers.schema import AllocationInstance, SolverParams

# GAP minimises cost; with one equal weight and unit requests, maximising
# sum(weight * units - cost) over all-must_allocate jobs is the same problem.
GAP_PARAMS_WEIGHTS = {1: 1000, 2: 1000, 3: 1000, 4: 1000, 5: 1000}


def read_gap(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cost[m, n], weight[m, n], capacity[m]) of a single-instance OR-Library GAP file."""
    numbers = np.array(Path(path).read_text().split(), dtype=np.int64)
    m, n = int(numbers[0]), int(numbers[1])
    cost = numbers[2 : 2 + m * n].reshape(m, n)
    weight = numbers[2 + m * n : 2 + 2 * m * n].reshape(m, n)
    capacity = numbers[2 + 2 * m * n : 2 + 2 * m * n + m]
    return cost, weight, capacity


def gap_instance(path: str | Path, params: SolverParams | None = None) -> AllocationInstance:
    """Agents -> resources, jobs -> must_allocate requests, one eligibility row per (job, agent)."""
    cost, weight, capacity = read_gap(path)
    m, n = cost.shape
    jobs = [f"J{j:04d}" for j in range(n)]
    agents = [f"A{i:03d}" for i in range(m)]
    requests = pd.DataFrame(
        {
            "request_id": jobs, "customer_id": "gap", "service": "gap", "region": "gap",
            "units": np.ones(n, dtype=np.int64), "priority": np.ones(n, dtype=np.int64),
            "must_allocate": True, "preferred_resource_id": pd.NA,
            "earliest_date": pd.NaT, "latest_date": pd.NaT,
        }
    )
    resources = pd.DataFrame(
        {"resource_id": agents, "name": agents, "service": "gap", "region": "gap",
         "capacity_units": capacity.astype(np.int64)}
    )
    eligibility = pd.DataFrame(
        {
            "request_id": np.tile(jobs, m),
            "resource_id": np.repeat(agents, n),
            "cost": cost.reshape(-1),
            "units": pd.array(weight.reshape(-1), dtype="Int64"),
        }
    )
    return build_instance("2000-01", requests, resources, eligibility=eligibility,
                          params=params or SolverParams(weights=GAP_PARAMS_WEIGHTS))


def gap_cost(instance: AllocationInstance, allocations: pd.DataFrame) -> int:
    """Total pair cost of an allocation (the GAP objective)."""
    return int(allocations["cost"].sum())
