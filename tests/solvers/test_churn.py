"""churn(): requests and units a new allocation moves relative to the previous version."""

import pandas as pd

from solvers.churn import churn


def allocations(rows: list[tuple[str, str | None, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["request_id", "resource_id", "units"])


def test_an_identical_allocation_moves_nothing():
    table = allocations([("Q1", "R1", 2), ("Q2", "R2", 3), ("Q3", None, 0)])
    figures = churn({"Q1": "R1", "Q2": "R2"}, table)
    assert figures["requests_moved"] == 0 and figures["units_moved"] == 0 and figures["moved_share"] == 0
    assert figures["previous_allocated"] == 2 and figures["requests_added"] == 0


def test_reassigned_dropped_and_added_requests_are_told_apart():
    table = allocations([("Q1", "R2", 2), ("Q2", None, 0), ("Q3", "R1", 4), ("Q4", "R1", 1)])
    figures = churn({"Q1": "R1", "Q2": "R2", "Q4": "R1"}, table, previous_units={"Q2": 3})
    assert figures["requests_reassigned"] == 1 and figures["requests_dropped"] == 1
    assert figures["requests_moved"] == 2 and figures["requests_added"] == 1
    assert figures["units_moved"] == 2 + 3
    assert figures["moved_share"] == 2 / 3


def test_without_a_previous_version_nothing_moved():
    figures = churn({}, allocations([("Q1", "R1", 2)]))
    assert figures["requests_moved"] == 0 and figures["requests_added"] == 1 and figures["moved_share"] == 0
