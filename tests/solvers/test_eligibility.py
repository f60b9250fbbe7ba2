"""Derived eligibility, costs, capacities and date windows (SPEC §2)."""


from solvers import SolverParams, build_instance, solve
from tests.solvers.builders import (
    FAST,
    availability_table,
    eligibility_table,
    instance,
    requests_table,
    resources_table,
    row,
)


def pairs_of(inst) -> dict[tuple[str, str], int]:
    return {(r.request_id, r.resource_id): r.cost for r in inst.pairs.itertuples()}


def test_a_request_is_eligible_for_resources_of_the_same_service_and_region_only():
    inst = instance(
        [{"request_id": "Q1"}],
        [
            {"resource_id": "R1", "capacity_units": 5},
            {"resource_id": "R2", "capacity_units": 5, "region": "us"},
            {"resource_id": "R3", "capacity_units": 5, "service": "storage"},
        ],
    )
    assert set(pairs_of(inst)) == {("Q1", "R1")}


def test_preferred_and_continuity_resources_cost_nothing_and_others_the_default_cost():
    inst = instance(
        [{"request_id": "Q1", "preferred_resource_id": "R1"}, {"request_id": "Q2"}],
        [{"resource_id": r, "capacity_units": 5} for r in ("R1", "R2", "R3")],
        params=SolverParams(default_cost=7),
        previous_final={"Q2": "R3"},
    )
    costs = pairs_of(inst)
    assert costs[("Q1", "R1")] == 0 and costs[("Q1", "R2")] == 7 and costs[("Q1", "R3")] == 7
    assert costs[("Q2", "R3")] == 0 and costs[("Q2", "R1")] == 7


def test_monthly_capacity_is_the_sum_of_availability_rows_when_a_resource_has_any():
    inst = instance(
        [{"request_id": "Q1"}],
        [{"resource_id": "R1", "capacity_units": 100}, {"resource_id": "R2", "capacity_units": 9}],
        availability=availability_table([("R1", "2025-03-01", 3), ("R1", "2025-03-02", 4)]),
    )
    capacity = dict(zip(inst.resources["resource_id"], inst.resources["capacity"]))
    assert capacity == {"R1": 7, "R2": 9}


def test_a_resource_without_availability_in_the_window_is_not_eligible():
    inst = instance(
        [{"request_id": "Q1", "earliest_date": "2025-03-10", "latest_date": "2025-03-20"}],
        [{"resource_id": "R1", "capacity_units": 0}, {"resource_id": "R2", "capacity_units": 5}],
        availability=availability_table(
            [("R1", "2025-03-05", 8), ("R1", "2025-03-21", 8), ("R1", "2025-03-15", 0)]
        ),
    )
    # R2 has no availability rows: available all month.
    assert set(pairs_of(inst)) == {("Q1", "R2")}
    assert inst.window_blocked == set()


def test_a_request_whose_only_resources_are_unavailable_in_its_window_gets_window_unavailable():
    inst = instance(
        [
            {"request_id": "Q1", "earliest_date": "2025-03-10", "latest_date": "2025-03-12"},
            {"request_id": "Q2", "latest_date": "2025-03-06"},
            {"request_id": "Q3", "region": "mars"},
        ],
        [{"resource_id": "R1", "capacity_units": 0}],
        availability=availability_table([("R1", "2025-03-05", 8), ("R1", "2025-03-13", 8)]),
    )
    assert inst.window_blocked == {"Q1"}
    proposal = solve(inst, FAST)
    assert row(proposal, "Q1")["reason"] == "window_unavailable"
    assert row(proposal, "Q2")["resource_id"] == "R1"
    assert row(proposal, "Q3")["reason"] == "no_eligible_resource"


def test_an_eligibility_table_gives_exactly_its_pairs_with_units_defaulting_to_the_request():
    inst = build_instance(
        "2025-03",
        requests_table([{"request_id": "Q1", "units": 4}, {"request_id": "Q2", "units": 2}]),
        resources_table([{"resource_id": "R1", "capacity_units": 5}, {"resource_id": "R2", "capacity_units": 5, "region": "us"}]),
        eligibility=eligibility_table([("Q1", "R2", 3, None), ("Q2", "R1", 1, 5)]),
    )
    pairs = inst.pairs.set_index(["request_id", "resource_id"])
    assert list(pairs.index) == [("Q1", "R2"), ("Q2", "R1")]
    assert pairs.loc[("Q1", "R2"), "units"] == 4 and pairs.loc[("Q2", "R1"), "units"] == 5
    assert pairs.loc[("Q1", "R2"), "cost"] == 3
