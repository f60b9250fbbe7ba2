"""Build a month's AllocationInstance from the landed tables (SPEC §2), vectorised."""

from __future__ import annotations

import numpy as np
import pandas as pd

from solvers.schema import (
    PAIR_COLUMNS,
    REQUEST_COLUMNS,
    RESOURCE_COLUMNS,
    AllocationInstance,
    SolverParams,
)


def build_instance(
    month: str,
    requests: pd.DataFrame,
    resources: pd.DataFrame,
    availability: pd.DataFrame | None = None,
    eligibility: pd.DataFrame | None = None,
    params: SolverParams = SolverParams(),
    previous_final: dict[str, str] | None = None,
    pins: dict[str, str] | None = None,
    exclusions: set[str] | None = None,
    previous_version: dict[str, str] | None = None,
) -> AllocationInstance:
    """Return the solver input: requests, resources with monthly capacity, eligible pairs."""
    requests = _normalised_requests(requests)
    resource_table = _resources_with_capacity(resources, availability)
    if eligibility is not None:
        pairs = _explicit_pairs(requests, resource_table, eligibility)
        window_blocked: set[str] = set()
    else:
        pairs, window_blocked = _derived_pairs(
            month, requests, resource_table, availability, params, previous_final or {}
        )
    return AllocationInstance(
        month=month,
        requests=requests,
        resources=resource_table,
        pairs=pairs,
        pins=dict(pins or {}),
        exclusions=set(exclusions or set()),
        previous=dict(previous_version or {}),
        window_blocked=window_blocked,
    )


def _normalised_requests(requests: pd.DataFrame) -> pd.DataFrame:
    """Requests with every REQUEST_COLUMNS column present (optional ones filled with NA)."""
    out = requests.copy()
    for column, default in (
        ("must_allocate", False),
        ("preferred_resource_id", pd.NA),
        ("earliest_date", pd.NaT),
        ("latest_date", pd.NaT),
    ):
        if column not in out.columns:
            out[column] = default
    out["must_allocate"] = out["must_allocate"].fillna(False).astype(bool)
    out["units"] = out["units"].astype("int64")
    out["priority"] = out["priority"].astype("int64")
    return out[REQUEST_COLUMNS + [c for c in out.columns if c not in REQUEST_COLUMNS]].reset_index(
        drop=True
    )


def monthly_capacity(resources: pd.DataFrame, availability: pd.DataFrame | None) -> pd.Series:
    """Capacity per resource: sum of its availability rows when it has any, else capacity_units."""
    capacity = resources.set_index("resource_id")["capacity_units"].astype("int64")
    if availability is None or availability.empty:
        return capacity
    summed = availability.groupby("resource_id")["available_units"].sum().astype("int64")
    has_rows = capacity.index.isin(summed.index)
    capacity = capacity.copy()
    capacity[has_rows] = summed.reindex(capacity.index[has_rows]).to_numpy()
    return capacity


def _resources_with_capacity(
    resources: pd.DataFrame, availability: pd.DataFrame | None
) -> pd.DataFrame:
    """Resources in RESOURCE_COLUMNS with their monthly capacity."""
    capacity = monthly_capacity(resources, availability)
    out = resources.reset_index(drop=True).copy()
    out["capacity"] = capacity.reindex(out["resource_id"]).to_numpy()
    return out[RESOURCE_COLUMNS]


def _explicit_pairs(
    requests: pd.DataFrame, resources: pd.DataFrame, eligibility: pd.DataFrame
) -> pd.DataFrame:
    """Exactly the eligibility rows (known ids only), units defaulting to the request's units."""
    request_units = pd.Series(requests["units"].to_numpy(), index=requests["request_id"])
    known = eligibility["request_id"].isin(request_units.index) & eligibility[
        "resource_id"
    ].isin(resources["resource_id"])
    pairs = eligibility.loc[known, ["request_id", "resource_id", "cost"]].copy()
    if "units" in eligibility.columns:
        units = eligibility.loc[known, "units"]
    else:
        units = pd.Series(pd.NA, index=pairs.index, dtype="Int64")
    default_units = request_units.reindex(pairs["request_id"]).to_numpy()
    pairs["units"] = np.where(units.isna().to_numpy(), default_units, units.fillna(0).to_numpy())
    pairs["cost"] = pairs["cost"].astype("int64")
    pairs["units"] = pairs["units"].astype("int64")
    pairs = pairs.drop_duplicates(["request_id", "resource_id"], keep="first")
    return pairs[PAIR_COLUMNS].reset_index(drop=True)


def _day_window(month: str, requests: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, int]:
    """Each request's first and last day index in the month (0-based, inclusive) and month length."""
    start = pd.Timestamp(f"{month}-01")
    days = start.days_in_month
    first = ((requests["earliest_date"] - start).dt.days).fillna(0).to_numpy(dtype="float64")
    last = ((requests["latest_date"] - start).dt.days).fillna(days - 1).to_numpy(dtype="float64")
    first = np.clip(first, 0, days).astype(np.int64)
    last = np.clip(last, -1, days - 1).astype(np.int64)
    return first, last, days


def _derived_pairs(
    month: str,
    requests: pd.DataFrame,
    resources: pd.DataFrame,
    availability: pd.DataFrame | None,
    params: SolverParams,
    previous_final: dict[str, str],
) -> tuple[pd.DataFrame, set[str]]:
    """Pairs of same service and region with availability in the request's window, and costs."""
    keys = pd.MultiIndex.from_frame(
        pd.concat(
            [requests[["service", "region"]], resources[["service", "region"]]], ignore_index=True
        ).astype(str)
    )
    codes, _ = pd.factorize(keys)
    request_key = codes[: len(requests)]
    resource_key = codes[len(requests) :]

    # Resources sorted by key: each request expands to the contiguous block of its key.
    resource_order = np.argsort(resource_key, kind="stable")
    sorted_keys = resource_key[resource_order]
    block_start = np.searchsorted(sorted_keys, request_key, side="left")
    block_end = np.searchsorted(sorted_keys, request_key, side="right")
    block_size = block_end - block_start
    pair_request = np.repeat(np.arange(len(requests)), block_size)
    offsets = np.arange(len(pair_request)) - np.repeat(np.cumsum(block_size) - block_size, block_size)
    pair_resource = resource_order[np.repeat(block_start, block_size) + offsets]

    keep = np.ones(len(pair_request), dtype=bool)
    if availability is not None and not availability.empty:
        keep = _available_in_window(month, requests, resources, availability, pair_request, pair_resource)
    blocked_requests = np.setdiff1d(np.unique(pair_request), np.unique(pair_request[keep]))
    window_blocked = set(requests["request_id"].to_numpy()[blocked_requests].tolist())
    pair_request, pair_resource = pair_request[keep], pair_resource[keep]

    request_ids = requests["request_id"].to_numpy(dtype=object)
    resource_ids = resources["resource_id"].to_numpy(dtype=object)
    pair_request_ids = request_ids[pair_request]
    pair_resource_ids = resource_ids[pair_resource]
    # Compare as resource codes (-1 for none) rather than as objects that may hold NA.
    resource_index = pd.Index(resource_ids)
    preferred = resource_index.get_indexer(
        requests["preferred_resource_id"].astype(object).where(requests["preferred_resource_id"].notna(), None)
    )[pair_request]
    continuity = np.full(len(requests), -1)
    if previous_final:
        continuity = resource_index.get_indexer(
            pd.Series(previous_final, dtype=object).reindex(request_ids).to_numpy()
        )
    free = (preferred == pair_resource) | (continuity[pair_request] == pair_resource)
    pairs = pd.DataFrame(
        {
            "request_id": pd.array(pair_request_ids, dtype="str"),
            "resource_id": pd.array(pair_resource_ids, dtype="str"),
            "cost": np.where(free, 0, params.default_cost).astype(np.int64),
            "units": requests["units"].to_numpy(dtype=np.int64)[pair_request],
        }
    )
    return pairs, window_blocked


def _available_in_window(
    month: str,
    requests: pd.DataFrame,
    resources: pd.DataFrame,
    availability: pd.DataFrame,
    pair_request: np.ndarray,
    pair_resource: np.ndarray,
) -> np.ndarray:
    """Mask of pairs whose resource has no availability rows or a positive sum inside the window."""
    first, last, days = _day_window(month, requests)
    start = pd.Timestamp(f"{month}-01")
    resource_index = pd.Index(resources["resource_id"])
    rows = availability[availability["resource_id"].isin(resource_index)]
    row_resource = resource_index.get_indexer(rows["resource_id"])
    row_day = np.clip((rows["date"] - start).dt.days.to_numpy(), 0, days - 1)
    per_day = np.zeros((len(resources), days + 1), dtype=np.int64)
    np.add.at(per_day, (row_resource, row_day + 1), rows["available_units"].to_numpy(np.int64))
    cumulative = per_day.cumsum(axis=1)
    has_rows = np.zeros(len(resources), dtype=bool)
    has_rows[row_resource] = True

    pair_first = first[pair_request]
    pair_last = last[pair_request]
    in_window = cumulative[pair_resource, pair_last + 1] - cumulative[pair_resource, pair_first]
    in_window = np.where(pair_last >= pair_first, in_window, 0)
    return ~has_rows[pair_resource] | (in_window > 0)
