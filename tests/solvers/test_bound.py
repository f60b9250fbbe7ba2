"""The LP relaxation bound (HiGHS) bounds every allocation from above and is tight when the LP is;
the Lagrangian bound stands in when the LP cannot be solved."""

import math
from pathlib import Path

import numpy as np

import solvers.model
import solvers.relaxation
from solvers import SolverParams, solve
from solvers.bound import BoundError, lagrangian_bound, lp_bound, lp_relaxation
from solvers.compiled import compile_instance
from solvers.gap_format import GAP_PARAMS_WEIGHTS, gap_instance
from solvers.greedy import greedy_fill, initial_assignment
from solvers.schema import BOUND_LAGRANGIAN
from tests.solvers.builders import assert_valid, instance
from tests.solvers.test_determinism_and_stability import contested_month

DATA = Path(__file__).parent.parent / "data" / "gap"


def test_the_lp_bound_is_at_least_the_proven_optimum_of_a_gap_instance():
    params = SolverParams(weights=GAP_PARAMS_WEIGHTS, time_limit_s=10.0, gap_tolerance=0.0)
    inst = gap_instance(DATA / "a05100", params)
    proposal = solve(inst, params)
    assert proposal.status == "OPTIMAL"
    assert proposal.objective <= lp_bound(inst, params) <= proposal.objective * 1.01


def test_the_lp_bound_equals_the_optimum_when_everything_fits():
    inst = instance([{"request_id": f"Q{k}", "units": 2, "priority": 1 + k % 5} for k in range(6)],
                    [{"resource_id": "R1", "capacity_units": 100}], pins={"Q0": "R1"})
    params = SolverParams(time_limit_s=5.0)
    assert lp_bound(inst, params) == solve(inst, params).objective


def test_the_lagrangian_bound_is_never_below_the_lp_bound_at_any_prices():
    params = SolverParams(time_limit_s=10.0)
    requests, resources, eligibility = contested_month(seed=4)
    c = compile_instance(instance(requests, resources, eligibility=eligibility), params)
    lp = lp_relaxation(c).bound
    pairs = np.arange(c.num_pairs)
    everyone, every_resource = np.arange(c.num_requests), np.arange(len(c.capacity))
    rng = np.random.default_rng(0)
    for prices in (np.zeros(len(c.capacity)), rng.uniform(0, 500, len(c.capacity))):
        start = lagrangian_bound(c, pairs, c.capacity, 0.0, deadline=0.0, start_price=prices)
        assert start.value(c.capacity, everyone, every_resource) >= lp - 1e-6
    tuned = lagrangian_bound(c, pairs, c.capacity, float(c.objective(greedy_fill(c, initial_assignment(c)))),
                             deadline=np.inf)
    value = tuned.value(c.capacity, everyone, every_resource)
    assert lp - 1e-6 <= value <= lp * 1.02, "the subgradient steps bring it near the LP optimum"


def test_when_the_lp_cannot_be_solved_the_solve_still_returns_its_allocation_and_names_its_bound(monkeypatch):
    def out_of_time(*args, **kwargs):
        raise BoundError("time limit reached")

    monkeypatch.setattr(solvers.relaxation, "lp_relaxation", out_of_time)
    monkeypatch.setattr(solvers.model, "FULL_MODEL_MAX_PAIRS", 0)  # no CP-SAT bound either
    monkeypatch.setattr(solvers.model, "FIRST_LOOK_MAX_PAIRS", 0)
    requests, resources, eligibility = contested_month(seed=4)
    inst = instance(requests, resources, eligibility=eligibility)
    proposal = solve(inst, SolverParams(time_limit_s=30.0, seed=1, deterministic_work=0.5, gap_tolerance=0.0))
    assert_valid(inst, proposal)
    assert proposal.bound_kind == BOUND_LAGRANGIAN
    assert "LP relaxation not solved" in proposal.bound_note
    # Allocations are worth whole units, so the solver rounds its bounds down: compare with the LP's floor.
    exact = math.floor(lp_bound(inst, SolverParams()))
    assert proposal.objective <= exact <= proposal.bound
