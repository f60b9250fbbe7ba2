"""The allocation model (SPEC §3): priorities, must_allocate, pins, exclusions, reasons."""


import pytest

from solvers import InfeasibleError, SolverParams, solve, validation
from solvers.budget import PROGRESS_INTERVAL_S
from tests.solvers.builders import FAST, assert_valid, eligibility_table, instance, row
from tests.solvers.test_determinism_and_stability import contested_month


def test_a_higher_priority_request_wins_a_contested_slot():
    inst = instance(
        [{"request_id": "LOW", "priority": 4, "units": 5}, {"request_id": "HIGH", "priority": 1, "units": 5}],
        [{"resource_id": "R1", "capacity_units": 5}],
    )
    proposal = solve(inst, FAST)
    assert_valid(inst, proposal)
    assert row(proposal, "HIGH")["resource_id"] == "R1"
    assert row(proposal, "LOW")["status"] == "unallocated"


def test_a_request_that_does_not_fit_is_capacity_exhausted_naming_the_full_resources():
    inst = instance(
        [{"request_id": "BIG", "priority": 5, "units": 4}, {"request_id": "TOP", "priority": 1, "units": 3}],
        [{"resource_id": "R1", "capacity_units": 5}],
    )
    proposal = solve(inst, FAST)
    lost = row(proposal, "BIG")
    assert lost["reason"] == "capacity_exhausted"
    assert "R1 (2 of 5 units left, needs 4; filled with priority 1)" in lost["detail"]
    assert lost["resource_id"] is None and lost["units"] == 0


def test_a_request_left_out_of_many_full_resources_names_three_and_counts_the_rest():
    # Five resources of 5 units, each filled by two requests of priorities 1 and 3 (units 2 and 3);
    # BIG (6 units) fits none of them; SMALL (1 unit) would fit nowhere either.
    resources = [{"resource_id": f"R{k}", "capacity_units": 5} for k in range(5)]
    held = [{"request_id": f"H{k}{j}", "priority": 1 + 2 * j, "units": 2 + j, "preferred_resource_id": f"R{k}"}
            for k in range(5) for j in range(2)]
    inst = instance([*held, {"request_id": "BIG", "priority": 5, "units": 6}], resources)

    lost = row(solve(inst, FAST), "BIG")

    assert lost["reason"] == "capacity_exhausted"
    assert lost["detail"].startswith("eligible resources full: R0 (0 of 5 units left, needs 6; filled with "
                                     "priorities 1-3), R1 (")
    assert lost["detail"].count("units left") == 3 and lost["detail"].endswith(" and 2 more")


def test_an_optional_request_worth_nothing_is_left_out_with_the_value_of_its_best_pair():
    inst = instance([{"request_id": "CHEAP", "priority": 5, "units": 1}], [{"resource_id": "R1", "capacity_units": 5}],
                    eligibility=eligibility_table([("CHEAP", "R1", 10**6, None)]))

    lost = row(solve(inst, FAST), "CHEAP")

    assert lost["reason"] == "cost_exceeds_value"
    assert lost["detail"].startswith("value 10 (weight.5 10 x 1 unit) does not exceed cost 1000000 of the best pair "
                                     "with room (R1, 5 units free), so allocating adds -999990 to the objective")


def test_a_must_allocate_request_is_served_even_when_others_are_worth_more():
    inst = instance(
        [{"request_id": "MUST", "priority": 5, "units": 5, "must_allocate": True},
         {"request_id": "RICH", "priority": 1, "units": 5}],
        [{"resource_id": "R1", "capacity_units": 5}],
    )
    proposal = solve(inst, FAST)
    assert_valid(inst, proposal)
    assert row(proposal, "MUST")["resource_id"] == "R1"


def test_must_allocate_requests_that_cannot_all_fit_raise_an_error_naming_them():
    inst = instance(
        [{"request_id": f"M{k}", "units": 3, "must_allocate": True} for k in range(3)],
        [{"resource_id": "R1", "capacity_units": 7}],
    )
    with pytest.raises(InfeasibleError) as error:
        solve(inst, FAST)
    assert len(error.value.request_ids) == 1 and error.value.request_ids[0].startswith("M")


def test_a_must_allocate_request_without_any_eligible_resource_raises_an_error_naming_it():
    inst = instance(
        [{"request_id": "LOST", "must_allocate": True, "region": "mars"}],
        [{"resource_id": "R1", "capacity_units": 7}],
    )
    with pytest.raises(InfeasibleError, match="LOST"):
        solve(inst, FAST)


def test_pins_are_hard_and_marked_pinned():
    inst = instance(
        [{"request_id": "Q1", "priority": 5, "units": 5, "preferred_resource_id": "R2"},
         {"request_id": "Q2", "priority": 1, "units": 5}],
        [{"resource_id": "R1", "capacity_units": 5}, {"resource_id": "R2", "capacity_units": 5}],
        pins={"Q1": "R1"},
    )
    proposal = solve(inst, FAST)
    assert_valid(inst, proposal)
    assert row(proposal, "Q1")["resource_id"] == "R1" and row(proposal, "Q1")["status"] == "pinned"
    assert row(proposal, "Q2")["resource_id"] == "R2"


def test_an_impossible_pin_is_dropped_and_reported_as_a_conflict():
    inst = instance(
        [{"request_id": "Q1"}, {"request_id": "Q2", "units": 4}, {"request_id": "Q3", "units": 4, "priority": 1}],
        [{"resource_id": "R1", "capacity_units": 5}, {"resource_id": "FAR", "capacity_units": 5, "region": "us"}],
        pins={"Q1": "FAR", "Q2": "R1", "Q3": "R1"},
    )
    proposal = solve(inst, FAST)
    assert_valid(inst, proposal)
    assert row(proposal, "Q1")["reason"] == "pin_conflict" and row(proposal, "Q1")["resource_id"] is None
    # Both pins on R1 do not fit: the higher priority one is kept.
    assert row(proposal, "Q3")["status"] == "pinned"
    assert row(proposal, "Q2")["reason"] == "pin_conflict"
    assert any("Q1 -> FAR" in c for c in proposal.conflicts)
    assert any("Q2 -> R1" in c for c in proposal.conflicts)


def test_a_pin_in_a_month_without_any_eligible_pair_is_dropped_as_a_conflict():
    inst = instance(
        [{"request_id": f"Q{k}"} for k in range(3)],
        [{"resource_id": "R0", "capacity_units": 0}],
        eligibility=eligibility_table([]),
        pins={"Q0": "R0"},
    )
    proposal = solve(inst, FAST)
    assert_valid(inst, proposal)
    assert row(proposal, "Q0")["reason"] == "pin_conflict"


def test_excluded_requests_hold_nothing_and_free_their_capacity():
    inst = instance(
        [{"request_id": "Q1", "priority": 1, "units": 5}, {"request_id": "Q2", "priority": 3, "units": 5}],
        [{"resource_id": "R1", "capacity_units": 5}],
        exclusions={"Q1"},
    )
    proposal = solve(inst, FAST)
    assert_valid(inst, proposal)
    assert row(proposal, "Q1")["status"] == "excluded" and row(proposal, "Q1")["reason"] == "excluded"
    assert row(proposal, "Q2")["resource_id"] == "R1"


def test_a_request_whose_cost_exceeds_its_value_is_left_with_that_reason():
    inst = instance(
        [{"request_id": "Q1", "priority": 5, "units": 1}],
        [{"resource_id": "R1", "capacity_units": 5}],
        eligibility=eligibility_table([("Q1", "R1", 50, None)]),
    )
    proposal = solve(inst, FAST)
    assert row(proposal, "Q1")["reason"] == "cost_exceeds_value"


def test_the_reported_objective_matches_the_validation_objective():
    inst = instance(
        [{"request_id": f"Q{k}", "priority": 1 + k % 5, "units": 1 + k % 4,
          "preferred_resource_id": "R1" if k % 3 == 0 else None} for k in range(30)],
        [{"resource_id": f"R{r}", "capacity_units": 6} for r in range(4)],
    )
    params = SolverParams(time_limit_s=5.0, gap_tolerance=0.0)
    proposal = solve(inst, params)
    assert proposal.status == "OPTIMAL" and proposal.gap == 0
    assert validation.objective_value(inst, proposal.allocations, params.weights) == proposal.objective


def test_progress_reports_seconds_objective_and_bound():
    inst = instance([{"request_id": "Q1"}], [{"resource_id": "R1", "capacity_units": 5}])
    seen = []
    proposal = solve(inst, FAST, progress=lambda s, o, b: seen.append((s, o, b)))
    assert seen and seen[-1][1] == proposal.objective and seen[-1][2] == proposal.bound


def test_progress_is_reported_at_most_twice_a_second_and_always_at_the_end():
    requests, resources, eligibility = contested_month(n_requests=1500, n_resources=120, seed=5)
    inst = instance(requests, resources, eligibility=eligibility)
    seen = []
    proposal = solve(inst, SolverParams(time_limit_s=2.0, gap_tolerance=0.0),
                     progress=lambda s, o, b: seen.append((s, o, b)))
    assert len(seen) >= 2
    seconds = [s for s, _, _ in seen[:-1]]
    assert all(later - earlier >= PROGRESS_INTERVAL_S for earlier, later in zip(seconds, seconds[1:]))
    assert seen[-1][1] == proposal.objective and seen[-1][2] == proposal.bound
