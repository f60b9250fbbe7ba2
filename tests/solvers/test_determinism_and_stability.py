"""Same inputs and seed give the same allocation; re-runs move only what they must."""

import numpy as np

from solvers import SolverParams, solve
from tests.solvers.builders import assert_valid, eligibility_table, instance


def contested_month(n_requests: int = 400, n_resources: int = 40, seed: int = 1):
    """A month with explicit eligibility (4 resources per request) and demand above capacity."""
    rng = np.random.default_rng(seed)
    requests = [{"request_id": f"Q{k:04d}", "units": int(rng.integers(1, 9)),
                 "priority": int(rng.integers(1, 6))} for k in range(n_requests)]
    resources = [{"resource_id": f"R{r:03d}", "capacity_units": int(rng.integers(10, 40))}
                 for r in range(n_resources)]
    rows = []
    for k in range(n_requests):
        for r in rng.choice(n_resources, 4, replace=False):
            rows.append((f"Q{k:04d}", f"R{r:03d}", int(rng.integers(0, 30)), None))
    return requests, resources, eligibility_table(rows)


def test_two_runs_with_the_same_seed_give_identical_allocations():
    requests, resources, eligibility = contested_month()
    inst = instance(requests, resources, eligibility=eligibility)
    params = SolverParams(time_limit_s=30.0, seed=7, deterministic_work=1.0)
    first, second = solve(inst, params), solve(inst, params)
    assert first.allocations.equals(second.allocations)
    assert first.objective == second.objective


def test_two_runs_of_the_large_neighbourhood_search_give_identical_allocations(monkeypatch):
    import solvers.model

    monkeypatch.setattr(solvers.model, "FULL_MODEL_MAX_PAIRS", 0)  # force the LNS path
    monkeypatch.setattr(solvers.model, "FIRST_LOOK_MAX_PAIRS", 0)
    requests, resources, eligibility = contested_month(seed=3)
    inst = instance(requests, resources, eligibility=eligibility)
    params = SolverParams(time_limit_s=30.0, seed=7, deterministic_work=1.0)
    first, second = solve(inst, params), solve(inst, params)
    assert first.status == "FEASIBLE"
    assert first.allocations.equals(second.allocations)


def test_a_rerun_with_one_exclusion_moves_nothing_but_fills_the_freed_room():
    # Equal requests and costs: any reshuffle is free, so only stability keeps things put.
    requests = [{"request_id": f"Q{k:02d}", "units": 5, "priority": 2} for k in range(20)]
    resources = [{"resource_id": f"R{r}", "capacity_units": 15} for r in range(3)]
    params = SolverParams(time_limit_s=5.0, stability=1)
    before = solve(instance(requests, resources), params)
    held = before.allocations.dropna(subset=["resource_id"])
    previous = dict(zip(held["request_id"], held["resource_id"]))
    leaving = held.iloc[4]
    rerun = instance(requests, resources, previous_version=previous, exclusions={leaving["request_id"]})
    after = solve(rerun, params)
    assert_valid(rerun, after)
    now = dict(zip(after.allocations["request_id"], after.allocations["resource_id"]))
    moved = [r for r, res in previous.items() if r != leaving["request_id"] and now[r] != res]
    assert moved == []
    newcomers = after.allocations[
        after.allocations["resource_id"].notna() & ~after.allocations["request_id"].isin(list(previous))
    ]
    assert list(newcomers["resource_id"]) == [leaving["resource_id"]]
