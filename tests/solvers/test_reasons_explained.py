"""An unallocated request's reason says why, with the figures that decide it and what would change it."""

from __future__ import annotations

import dataclasses

from solvers import solve
from solvers.schema import DEFAULT_WEIGHTS
from tests.solvers.builders import FAST, instance, row

# The demo month's case: a one-unit priority-5 request, and a resource of its group with idle capacity
# that is not its preferred one (cost default_cost = 10 = weight.5 x 1 unit).
ONE_UNIT_PRIORITY_5 = {"request_id": "Q1", "units": 1, "priority": 5}
IDLE = [{"resource_id": "R1", "capacity_units": 40}]


def test_a_request_worth_no_more_than_its_cost_says_value_cost_and_the_parameters_that_would_change_it():
    allocation = row(solve(instance([ONE_UNIT_PRIORITY_5], IDLE), FAST), "Q1")

    assert allocation["status"] == "unallocated" and allocation["reason"] == "cost_exceeds_value"
    assert allocation["detail"] == (
        "value 10 (weight.5 10 x 1 unit) does not exceed cost 10 of the best pair with room (R1, 40 units free), "
        "so allocating adds 0 to the objective; set weight.5 to 11 or more, or bring the pair's cost below 10 "
        "(default_cost for a resource that is neither preferred nor continuing, or the eligibility cost)")


def test_the_parameter_the_reason_names_does_allocate_the_request():
    weights = {**DEFAULT_WEIGHTS, 5: 11}
    raised = row(solve(instance([ONE_UNIT_PRIORITY_5], IDLE), dataclasses.replace(FAST, weights=weights)), "Q1")
    cheap = dataclasses.replace(FAST, default_cost=9)
    cheaper = row(solve(instance([ONE_UNIT_PRIORITY_5], IDLE, params=cheap), cheap), "Q1")
    preferred = row(solve(instance([{**ONE_UNIT_PRIORITY_5, "preferred_resource_id": "R1"}], IDLE), FAST), "Q1")

    assert [raised["resource_id"], cheaper["resource_id"], preferred["resource_id"]] == ["R1", "R1", "R1"]


def test_the_figures_are_those_of_the_best_pair_that_has_room():
    requests = [{"request_id": "Q1", "units": 3, "priority": 5, "preferred_resource_id": "R1"},
                {"request_id": "Q2", "units": 3, "priority": 1, "preferred_resource_id": "R1"}]
    resources = [{"resource_id": "R1", "capacity_units": 3}, {"resource_id": "R2", "capacity_units": 10}]
    params = dataclasses.replace(FAST, default_cost=40)

    allocation = row(solve(instance(requests, resources, params=params), params), "Q1")

    assert allocation["reason"] == "cost_exceeds_value"
    assert allocation["detail"].startswith(
        "value 30 (weight.5 10 x 3 units) does not exceed cost 40 of the best pair with room (R2, 10 units free), "
        "so allocating adds -10 to the objective; set weight.5 to 14 or more, or bring the pair's cost below 30")
