"""The plain CP-SAT baseline of the benchmarks solves solvers.cpsat's model (not a copy of it)."""

import numpy as np

import bench.baselines
from bench.baselines import greedy_only, plain_cpsat
from solvers import SolverParams, solve
from solvers.compiled import NO_PAIR, compile_instance
from tests.solvers.builders import instance
from tests.solvers.test_determinism_and_stability import contested_month


def test_plain_cpsat_reaches_the_proven_optimum_of_a_small_month_and_keeps_its_pins():
    requests, resources, eligibility = contested_month(n_requests=40, n_resources=6, seed=2)
    inst = instance(requests, resources, eligibility=eligibility)
    params = SolverParams(time_limit_s=10.0, gap_tolerance=0.0)
    optimum = solve(inst, params)
    assert optimum.status == "OPTIMAL"
    c = compile_instance(inst, params)
    assign, _ = plain_cpsat(c, 10.0)
    assert c.objective(assign) == optimum.objective
    assert (c.load(assign) <= c.capacity).all()


def test_plain_cpsat_builds_the_solver_model(monkeypatch):
    built = []
    real = bench.baselines.build_model

    def spy(*args, **kwargs):
        built.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(bench.baselines, "build_model", spy)
    inst = instance([{"request_id": f"Q{k}", "units": 2} for k in range(4)], [{"resource_id": "R1", "capacity_units": 5}],
                    pins={"Q0": "R1"})
    c = compile_instance(inst, SolverParams())
    assign, _ = plain_cpsat(c, 5.0)
    assert len(built) == 1 and 0 not in built[0].tolist(), "the pinned request is fixed, not a variable"
    assert assign[0] == c.pinned_pair[0] and (c.load(assign) <= c.capacity).all()
    greedy, _ = greedy_only(c)
    assert c.objective(greedy) <= c.objective(assign)
    assert (greedy != NO_PAIR).sum() == 2 and np.array_equal(greedy[:1], assign[:1])
