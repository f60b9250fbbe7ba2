"""Re-runs start from the previous version: strict stability moves only what the change requires."""

from solvers import SolverParams, solve, validation
from solvers.churn import churn
from tests.solvers.builders import assert_valid, eligibility_table, instance, row
from tests.solvers.test_determinism_and_stability import contested_month

PARAMS = SolverParams(time_limit_s=10.0, seed=3)


def held(proposal) -> dict[str, str]:
    """request_id -> resource_id of the allocated rows: the `previous` of a re-run."""
    allocated = proposal.allocations.dropna(subset=["resource_id"])
    return dict(zip(allocated["request_id"], allocated["resource_id"]))


def test_a_rerun_with_the_same_inputs_moves_nothing():
    requests, resources, eligibility = contested_month(seed=11)
    first = solve(instance(requests, resources, eligibility=eligibility), PARAMS)
    rerun = instance(requests, resources, eligibility=eligibility, previous_version=held(first))
    second = solve(rerun, PARAMS)
    assert_valid(rerun, second)
    assert second.churn["requests_moved"] == 0 and second.churn["units_moved"] == 0
    assert second.churn["previous_allocated"] == len(held(first))
    assert second.objective >= first.objective


def test_after_one_pin_only_the_pinned_request_and_those_it_displaces_move():
    requests, resources, eligibility = contested_month(seed=12)
    first = solve(instance(requests, resources, eligibility=eligibility), PARAMS)
    before = held(first)
    # Pin an allocated request onto another of its eligible resources that is in use.
    pairs = eligibility.merge(first.allocations[["request_id", "resource_id"]].dropna(), on="request_id",
                              suffixes=("", "_now"))
    pairs = pairs[(pairs["resource_id"] != pairs["resource_id_now"])
                  & pairs["resource_id"].isin(set(before.values()))]
    pinned, target = pairs.iloc[0]["request_id"], pairs.iloc[0]["resource_id"]
    rerun = instance(requests, resources, eligibility=eligibility, previous_version=before, pins={pinned: target})
    second = solve(rerun, PARAMS)
    assert_valid(rerun, second)
    assert row(second, pinned)["resource_id"] == target
    now = held(second)
    moved = {r for r, resource in before.items() if now.get(r) != resource}
    assert pinned in moved
    assert all(before[r] == target for r in moved - {pinned}), "only requests displaced from the pin's resource move"
    assert second.churn["requests_moved"] == len(moved)


def two_resource_month(previous: dict[str, str], stability):
    """Q1 held on R1 (cost 20) although R2 (cost 0) is free: moving gains 20."""
    inst = instance([{"request_id": "Q1", "units": 2, "priority": 3}],
                    [{"resource_id": "R1", "capacity_units": 5}, {"resource_id": "R2", "capacity_units": 5}],
                    eligibility=eligibility_table([("Q1", "R1", 20, None), ("Q1", "R2", 0, None)]),
                    previous_version=previous)
    return inst, SolverParams(time_limit_s=5.0, stability=stability, gap_tolerance=0.0)


def test_strict_stability_keeps_a_request_even_where_moving_it_would_gain():
    inst, params = two_resource_month({"Q1": "R1"}, None)
    proposal = solve(inst, params)
    assert row(proposal, "Q1")["resource_id"] == "R1"
    assert proposal.churn["requests_moved"] == 0


def test_a_stability_weight_lets_a_request_move_only_when_the_move_gains_more():
    inst, params = two_resource_month({"Q1": "R1"}, 30)
    assert row(solve(inst, params), "Q1")["resource_id"] == "R1"
    inst, params = two_resource_month({"Q1": "R1"}, 10)
    moved = solve(inst, params)
    assert row(moved, "Q1")["resource_id"] == "R2"
    assert moved.churn["requests_moved"] == 1 and moved.churn["units_moved"] == 2
    assert moved.objective == validation.objective_value(inst, moved.allocations, params.weights, move_penalty=10)


def test_a_new_must_allocate_request_displaces_a_kept_one_when_nothing_else_fits():
    inst = instance([{"request_id": "OLD", "units": 5, "priority": 1},
                     {"request_id": "MUST", "units": 5, "priority": 5, "must_allocate": True}],
                    [{"resource_id": "R1", "capacity_units": 5}, {"resource_id": "R2", "capacity_units": 5}],
                    eligibility=eligibility_table([("OLD", "R1", 0, None), ("OLD", "R2", 0, None),
                                                   ("MUST", "R1", 0, None)]),
                    previous_version={"OLD": "R1"})
    proposal = solve(inst, SolverParams(time_limit_s=5.0))
    assert_valid(inst, proposal)
    assert row(proposal, "MUST")["resource_id"] == "R1" and row(proposal, "OLD")["resource_id"] == "R2"
    assert proposal.churn["requests_moved"] == 1
    assert "stability weight" in proposal.bound_note


def test_a_resource_that_shrank_displaces_the_requests_worth_least_per_unit_first():
    requests = [{"request_id": "HIGH", "units": 3, "priority": 1}, {"request_id": "LOW", "units": 3, "priority": 5}]
    previous = {"HIGH": "R1", "LOW": "R1"}
    inst = instance(requests, [{"resource_id": "R1", "capacity_units": 4}], previous_version=previous)
    proposal = solve(inst, SolverParams(time_limit_s=5.0))
    assert_valid(inst, proposal)
    assert row(proposal, "HIGH")["resource_id"] == "R1" and row(proposal, "LOW")["resource_id"] is None
    assert proposal.churn == churn(previous, proposal.allocations, {"HIGH": 3, "LOW": 3})
    assert proposal.churn["requests_dropped"] == 1 and proposal.churn["units_moved"] == 3
