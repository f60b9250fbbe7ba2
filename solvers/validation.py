"""Solver-independent executable spec of an allocation (SPEC §3): *_rows, assert_*, objective_value."""

from __future__ import annotations

import pandas as pd

from solvers.schema import (
    REASON_EXCLUDED,
    REASON_PIN_CONFLICT,
    STATUS_EXCLUDED,
    AllocationInstance,
)


def _allocated(allocations: pd.DataFrame) -> pd.DataFrame:
    """Rows that name a resource."""
    return allocations[allocations["resource_id"].notna()]


def over_capacity_rows(instance: AllocationInstance, allocations: pd.DataFrame) -> pd.DataFrame:
    """Resources whose allocated pair units exceed their monthly capacity."""
    used = (
        _allocated(allocations)
        .merge(instance.pairs[["request_id", "resource_id", "units"]], on=["request_id", "resource_id"],
               how="left", suffixes=("_allocated", ""))
    )
    used["units"] = used["units"].fillna(used["units_allocated"])
    load = used.groupby("resource_id", as_index=False)["units"].sum().rename(columns={"units": "allocated_units"})
    table = load.merge(instance.resources[["resource_id", "capacity"]], on="resource_id", how="left")
    table["capacity"] = table["capacity"].fillna(0)
    table["excess"] = table["allocated_units"] - table["capacity"]
    return table[table["excess"] > 0].reset_index(drop=True)


def ineligible_rows(instance: AllocationInstance, allocations: pd.DataFrame) -> pd.DataFrame:
    """Allocated rows whose (request, resource) is not an eligible pair."""
    allocated = _allocated(allocations)
    keys = instance.pairs[["request_id", "resource_id"]].drop_duplicates()
    marked = allocated.merge(keys, on=["request_id", "resource_id"], how="left", indicator=True)
    return marked[marked["_merge"] == "left_only"].drop(columns="_merge").reset_index(drop=True)


def unserved_must_allocate(instance: AllocationInstance, allocations: pd.DataFrame) -> pd.DataFrame:
    """must_allocate requests without a resource, other than excluded ones and reported pin conflicts."""
    must = instance.requests.loc[instance.requests["must_allocate"].astype(bool), ["request_id"]]
    must = must[~must["request_id"].isin(list(instance.exclusions))]
    rows = must.merge(allocations, on="request_id", how="left")
    waived = rows["reason"].isin([REASON_PIN_CONFLICT, REASON_EXCLUDED])
    return rows[rows["resource_id"].isna() & ~waived].reset_index(drop=True)


def pin_violation_rows(instance: AllocationInstance, allocations: pd.DataFrame) -> pd.DataFrame:
    """Pins neither honoured nor reported as pin_conflict (excluded requests' pins do not count)."""
    pins = pd.DataFrame(list(instance.pins.items()), columns=["request_id", "pinned_resource_id"])
    pins = pins[~pins["request_id"].isin(list(instance.exclusions))]
    rows = pins.merge(allocations, on="request_id", how="left")
    bad = (rows["resource_id"] != rows["pinned_resource_id"]) & (rows["reason"] != REASON_PIN_CONFLICT)
    return rows[bad.fillna(True)].reset_index(drop=True)


def exclusion_violation_rows(instance: AllocationInstance, allocations: pd.DataFrame) -> pd.DataFrame:
    """Excluded requests that hold a resource or are not marked excluded."""
    rows = allocations[allocations["request_id"].isin(list(instance.exclusions))]
    return rows[rows["resource_id"].notna() | (rows["status"] != STATUS_EXCLUDED)].reset_index(drop=True)


def _assert_none(bad: pd.DataFrame, what: str) -> None:
    """AssertionError naming `what` and listing the rows, unless there are none."""
    assert bad.empty, f"{what}:\n{bad}"


def assert_no_resource_over_capacity(instance: AllocationInstance, allocations: pd.DataFrame) -> None:
    """No resource's allocated pair units exceed its capacity."""
    _assert_none(over_capacity_rows(instance, allocations), "resources over capacity")


def assert_only_eligible_pairs(instance: AllocationInstance, allocations: pd.DataFrame) -> None:
    """Every allocation is an eligible pair."""
    _assert_none(ineligible_rows(instance, allocations), "ineligible allocations")


def assert_must_allocate_served(instance: AllocationInstance, allocations: pd.DataFrame) -> None:
    """Every must_allocate request (not excluded, no pin conflict) has a resource."""
    _assert_none(unserved_must_allocate(instance, allocations), "unserved must_allocate requests")


def assert_pins_honoured(instance: AllocationInstance, allocations: pd.DataFrame) -> None:
    """Every pin holds, or is reported as a pin_conflict."""
    _assert_none(pin_violation_rows(instance, allocations), "pins not honoured")


def assert_exclusions_respected(instance: AllocationInstance, allocations: pd.DataFrame) -> None:
    """Excluded requests hold no resource and carry status excluded."""
    _assert_none(exclusion_violation_rows(instance, allocations), "exclusions not respected")


def assert_one_row_per_request(instance: AllocationInstance, allocations: pd.DataFrame) -> None:
    """Exactly one allocation row per request, and none for unknown requests."""
    counts = allocations["request_id"].value_counts()
    assert (counts == 1).all(), f"duplicate rows: {counts[counts > 1].index.tolist()[:20]}"
    expected = set(instance.requests["request_id"])
    got = set(allocations["request_id"])
    assert got == expected, (
        f"missing {sorted(expected - got)[:20]}, unknown {sorted(got - expected)[:20]}"
    )


def objective_value(
    instance: AllocationInstance,
    allocations: pd.DataFrame,
    weights: dict[int, int],
    move_penalty: int = 0,
) -> float:
    """sum over allocated pairs of weight[priority] * request.units - pair.cost, minus move_penalty
    (SolverParams.stability when it is a number) for each request with a previous resource that
    it no longer holds."""
    allocated = _allocated(allocations)[["request_id", "resource_id"]]
    rows = allocated.merge(instance.pairs[["request_id", "resource_id", "cost"]],
                           on=["request_id", "resource_id"], how="left")
    rows = rows.merge(instance.requests[["request_id", "units", "priority"]], on="request_id", how="left")
    weight = rows["priority"].map(lambda p: weights.get(int(p), 0))
    total = float((weight * rows["units"] - rows["cost"].fillna(0)).sum())
    if move_penalty and instance.previous:
        held = dict(zip(allocated["request_id"], allocated["resource_id"]))
        known = set(instance.requests["request_id"])
        moved = sum(1 for r, res in instance.previous.items() if r in known and held.get(r) != res)
        total -= move_penalty * moved
    return total
