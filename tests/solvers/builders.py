"""Small table builders shared by the solver tests."""

from __future__ import annotations

import pandas as pd

from solvers import SolverParams, build_instance
from solvers.schema import AllocationInstance

MONTH = "2025-03"
FAST = SolverParams(time_limit_s=5.0)


def requests_table(rows: list[dict]) -> pd.DataFrame:
    """Requests with loader dtypes; each row needs request_id and may override any column."""
    defaults = {
        "customer_id": "C1", "service": "compute", "region": "eu", "units": 1, "priority": 3,
        "must_allocate": False, "preferred_resource_id": pd.NA,
        "earliest_date": pd.NaT, "latest_date": pd.NaT,
    }
    table = pd.DataFrame([{**defaults, **row} for row in rows])
    table["units"] = table["units"].astype("int64")
    table["priority"] = table["priority"].astype("int64")
    table["must_allocate"] = table["must_allocate"].astype(bool)
    for column in ("earliest_date", "latest_date"):
        table[column] = pd.to_datetime(table[column]).astype("datetime64[ns]")
    return table


def resources_table(rows: list[dict]) -> pd.DataFrame:
    """Resources with loader dtypes; each row needs resource_id and capacity_units."""
    defaults = {"service": "compute", "region": "eu"}
    table = pd.DataFrame([{**defaults, "name": row["resource_id"], **row} for row in rows])
    table["capacity_units"] = table["capacity_units"].astype("int64")
    return table[["resource_id", "name", "service", "region", "capacity_units"]]


def availability_table(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """Availability rows (resource_id, date, available_units)."""
    table = pd.DataFrame(rows, columns=["resource_id", "date", "available_units"])
    table["date"] = pd.to_datetime(table["date"]).astype("datetime64[ns]")
    table["available_units"] = table["available_units"].astype("int64")
    return table


def eligibility_table(rows: list[tuple[str, str, int, int | None]]) -> pd.DataFrame:
    """Eligibility rows (request_id, resource_id, cost, units or None)."""
    table = pd.DataFrame(rows, columns=["request_id", "resource_id", "cost", "units"])
    table["cost"] = table["cost"].astype("int64")
    table["units"] = pd.array(table["units"], dtype="Int64")
    return table


def instance(requests: list[dict], resources: list[dict], **kwargs) -> AllocationInstance:
    """build_instance over row lists."""
    return build_instance(MONTH, requests_table(requests), resources_table(resources), **kwargs)


def row(proposal, request_id: str) -> dict:
    """The allocation row of one request as a dict."""
    table = proposal.allocations
    return table[table["request_id"] == request_id].iloc[0].to_dict()


def assert_valid(inst: AllocationInstance, proposal) -> None:
    """Every validator of solvers.validation holds."""
    from solvers import validation

    a = proposal.allocations
    validation.assert_one_row_per_request(inst, a)
    validation.assert_no_resource_over_capacity(inst, a)
    validation.assert_only_eligible_pairs(inst, a)
    validation.assert_must_allocate_served(inst, a)
    validation.assert_pins_honoured(inst, a)
    validation.assert_exclusions_respected(inst, a)
