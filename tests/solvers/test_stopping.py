"""gap_tolerance: the solve stops once proven within it of the bound, and says why it stopped."""

import pytest

import solvers.model
from solvers import SolverParams, solve
from solvers.schema import STOP_OPTIMAL, STOP_TIME_LIMIT, STOP_TOLERANCE, STOP_WORK_BUDGET
from tests.solvers.builders import assert_valid, instance
from tests.solvers.test_determinism_and_stability import contested_month


@pytest.fixture
def counted_searches(monkeypatch):
    """Force the LP rounding + LNS path and count the LNS calls."""
    calls = []
    real = solvers.model.improve

    def counted(*args, **kwargs):
        calls.append(kwargs.get("target"))
        return real(*args, **kwargs)

    monkeypatch.setattr(solvers.model, "FULL_MODEL_MAX_PAIRS", 0)
    monkeypatch.setattr(solvers.model, "FIRST_LOOK_MAX_PAIRS", 0)
    monkeypatch.setattr(solvers.model, "improve", counted)
    return calls


def test_a_month_within_a_loose_tolerance_stops_without_searching_and_says_so(counted_searches):
    requests, resources, eligibility = contested_month(seed=3)
    inst = instance(requests, resources, eligibility=eligibility)
    proposal = solve(inst, SolverParams(time_limit_s=30.0, seed=7, deterministic_work=5.0, gap_tolerance=0.05))
    assert_valid(inst, proposal)
    assert counted_searches == []
    assert proposal.stop_reason == STOP_TOLERANCE
    assert proposal.objective <= proposal.bound and proposal.gap <= 0.05


def test_a_month_without_tolerance_searches_until_its_budget_is_spent_and_says_so(counted_searches):
    requests, resources, eligibility = contested_month(seed=3)
    inst = instance(requests, resources, eligibility=eligibility)
    proposal = solve(inst, SolverParams(time_limit_s=30.0, seed=7, deterministic_work=0.3, gap_tolerance=0.0))
    assert_valid(inst, proposal)
    assert len(counted_searches) == 1
    assert proposal.stop_reason == STOP_WORK_BUDGET and proposal.gap > 0


def test_a_wall_clock_run_names_the_time_limit_only_when_it_is_outside_the_tolerance():
    requests, resources, eligibility = contested_month(n_requests=2000, n_resources=100, seed=5)
    inst = instance(requests, resources, eligibility=eligibility)
    proposal = solve(inst, SolverParams(time_limit_s=2.0, seed=7, gap_tolerance=1e-6))
    assert_valid(inst, proposal)
    assert proposal.stop_reason in (STOP_TIME_LIMIT, STOP_TOLERANCE, STOP_OPTIMAL)
    if proposal.stop_reason == STOP_TIME_LIMIT:
        assert proposal.gap > 1e-6
    else:
        assert proposal.gap <= 1e-6


def test_a_small_month_proven_optimal_says_optimal():
    inst = instance([{"request_id": f"Q{k}", "units": 1 + k % 3, "priority": 1 + k % 5} for k in range(8)],
                    [{"resource_id": "R1", "capacity_units": 6}])
    proposal = solve(inst, SolverParams(time_limit_s=5.0, gap_tolerance=0.0))
    assert proposal.status == "OPTIMAL" and proposal.stop_reason == STOP_OPTIMAL
    assert proposal.objective == proposal.bound


def test_the_phase_times_cover_building_the_models_separately():
    requests, resources, eligibility = contested_month()
    proposal = solve(instance(requests, resources, eligibility=eligibility), SolverParams(time_limit_s=5.0))
    assert {"compile", "greedy", "model_build", "search", "explain"} <= set(proposal.phase_seconds)
    assert all(seconds >= 0 for seconds in proposal.phase_seconds.values())
