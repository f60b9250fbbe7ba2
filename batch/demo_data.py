"""Deterministic, realistic demo inputs for one month, written as a landing folder (SPEC §2)."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from batch.landing import landing_folder
from batch.months import check_data_month

SERVICES = ["consulting", "installation", "maintenance", "repair", "training"]
REGION_NAMES = ["north", "south", "east", "west", "central", "coast", "alps", "lakes"]
# Resources per service x region group the generator aims for; the solver derives eligible
# pairs inside a group, so this bounds the pairs per request (about 15-40).
RESOURCES_PER_GROUP = 25
# Demand / capacity per service: the first two are short (conflicts), the rest comfortable.
SERVICE_DEMAND_RATIO = {
    "consulting": 1.6,
    "installation": 1.3,
    "maintenance": 0.8,
    "repair": 0.6,
    "training": 0.7,
}
PRIORITY_SHARES = [0.05, 0.10, 0.25, 0.30, 0.30]  # priorities 1..5: few urgent, many routine
MUST_ALLOCATE_SHARE = 0.05
# must_allocate demand stays well under its group's capacity so a feasible allocation exists.
MUST_ALLOCATE_MAX_GROUP_SHARE = 0.25
PREFERRED_SHARE = 0.20
WINDOW_SHARE = 0.25
TABLE_ORDER = ["resources", "availability", "requests", "eligibility", "actuals"]


def month_days(month: str) -> pd.DatetimeIndex:
    """Every day of month `YYYY-MM` as datetime64[ns]."""
    start = pd.Timestamp(f"{month}-01")
    return pd.date_range(start, start + pd.offsets.MonthEnd(0), freq="D").astype("datetime64[ns]")


def _region_names(count: int) -> list[str]:
    """`count` region names: the plain names first, then numbered variants."""
    names = list(REGION_NAMES[:count])
    extra = 2
    while len(names) < count:
        names += [f"{n}-{extra}" for n in REGION_NAMES][: count - len(names)]
        extra += 1
    return names


def _ids(prefix: str, count: int) -> np.ndarray:
    """Zero-padded identifiers like R00001, wide enough for `count`."""
    width = max(4, len(str(count)))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(1, count + 1)], dtype=object)


def _generate_resources(rng: np.random.Generator, resources: int, days: pd.DatetimeIndex):
    """Resources table plus their daily rate and group index (sorted so groups are contiguous)."""
    n_regions = max(3, math.ceil(resources / (len(SERVICES) * RESOURCES_PER_GROUP)))
    regions = _region_names(n_regions)
    n_groups = len(SERVICES) * n_regions
    # Uneven group sizes (some groups busier than others), every group non-empty when possible.
    weights = rng.uniform(0.6, 1.4, n_groups)
    group = rng.choice(n_groups, size=resources, p=weights / weights.sum())
    if resources >= n_groups:
        group[:n_groups] = np.arange(n_groups)
    group = np.sort(group)
    daily_rate = rng.integers(1, 9, resources)  # units per working day
    workdays = int((days.day_of_week < 5).sum())
    service_idx, region_idx = np.divmod(group, n_regions)
    ids = _ids("R", resources)
    service = np.array(SERVICES, dtype=object)[service_idx]
    region = np.array(regions, dtype=object)[region_idx]
    table = pd.DataFrame(
        {
            "resource_id": ids,
            "name": [f"{s.title()} team {r} #{i[1:]}" for s, r, i in zip(service, region, ids)],
            "service": service,
            "region": region,
            "capacity_units": (daily_rate * workdays).astype("int64"),
        }
    )
    return table, daily_rate, group, n_regions


def _generate_availability(rng: np.random.Generator, daily_rate: np.ndarray, ids, days):
    """Daily availability: weekends off for most, absence blocks, late starts, a few without rows."""
    n, d = len(daily_rate), len(days)
    units = np.repeat(daily_rate[:, None], d, axis=1)
    weekend = np.asarray(days.day_of_week >= 5)
    works_weekends = rng.random(n) < 0.15
    units[np.ix_(~works_weekends, weekend)] = 0
    # Absence blocks (holidays, sickness): zero days for about a third of the resources.
    absent = rng.random(n) < 0.35
    start = rng.integers(0, d, n)
    length = rng.integers(1, 11, n)
    day_idx = np.arange(d)[None, :]
    block = absent[:, None] & (day_idx >= start[:, None]) & (day_idx < (start + length)[:, None])
    units[block] = 0
    # Missing days: some resources start late in the month (no rows before their first day).
    present = np.ones((n, d), dtype=bool)
    late = rng.random(n) < 0.05
    first_day = rng.integers(1, max(2, d // 2), n)
    present[late] = day_idx[0] >= first_day[late, None]
    # A few resources send no availability at all: their capacity_units apply.
    present[rng.random(n) < 0.03] = False
    rows, cols = np.nonzero(present)
    table = pd.DataFrame(
        {
            "resource_id": np.asarray(ids, dtype=object)[rows],
            "date": days.to_numpy()[cols],
            "available_units": units[rows, cols].astype("int64"),
        }
    )
    has_rows = present.any(axis=1)
    monthly = np.where(has_rows, (units * present).sum(axis=1), 0)
    return table, monthly, has_rows


def _generate_requests(
    rng: np.random.Generator,
    requests: int,
    resource_table: pd.DataFrame,
    group: np.ndarray,
    group_capacity: np.ndarray,
    days: pd.DatetimeIndex,
) -> pd.DataFrame:
    """Requests spread over groups by capacity, scaled to each service's demand ratio."""
    n_groups = len(group_capacity)
    n_regions = n_groups // len(SERVICES)
    ratio = np.repeat([SERVICE_DEMAND_RATIO[s] for s in SERVICES], n_regions)
    target = group_capacity * ratio
    offsets = np.searchsorted(group, np.arange(n_groups + 1))
    sizes = np.diff(offsets)
    # Groups without resources get no requests, so every request's service exists.
    target_weight = target if target.sum() > 0 else (sizes > 0).astype(float)
    req_group = np.sort(rng.choice(n_groups, size=requests, p=target_weight / target_weight.sum()))
    base = rng.geometric(0.2, requests).astype(float)  # skewed: many small, a few large
    base_sum = np.bincount(req_group, weights=base, minlength=n_groups)
    scale = np.divide(target, base_sum, out=np.ones(n_groups), where=base_sum > 0)
    # No single request bigger than the largest resource of its group.
    cap = resource_table["capacity_units"].to_numpy()
    group_max = np.maximum.reduceat(cap, np.minimum(offsets[:-1], len(cap) - 1)) if len(cap) else cap
    group_max = np.where(sizes > 0, group_max, 1)
    units = np.clip(np.rint(base * scale[req_group]), 1, group_max[req_group]).astype("int64")

    priority = rng.choice(np.arange(1, 6), size=requests, p=PRIORITY_SHARES).astype("int64")

    # must_allocate: small requests only, capped per group so the month stays feasible.
    must = (rng.random(requests) < MUST_ALLOCATE_SHARE) & (units <= np.maximum(1, group_max[req_group] // 4))
    must_units = np.where(must, units, 0)
    order = np.lexsort((np.arange(requests), req_group))
    cum = np.cumsum(must_units[order])
    group_start = np.searchsorted(req_group[order], np.arange(n_groups))
    before = np.concatenate([[0], cum])[group_start]
    cum_in_group = cum - before[req_group[order]]
    allowed = np.empty(requests, dtype=bool)
    allowed[order] = cum_in_group <= MUST_ALLOCATE_MAX_GROUP_SHARE * group_capacity[req_group[order]]
    must &= allowed & (sizes[req_group] > 0)

    ids = resource_table["resource_id"].to_numpy()
    preferred = np.full(requests, None, dtype=object)
    wants = (rng.random(requests) < PREFERRED_SHARE) & (sizes[req_group] > 0)
    pick = offsets[req_group] + np.floor(rng.random(requests) * np.maximum(sizes[req_group], 1)).astype(int)
    preferred[wants] = ids[pick[wants]]

    d = len(days)
    earliest = np.full(requests, np.datetime64("NaT"), dtype="datetime64[ns]")
    latest = earliest.copy()
    # Windows only on optional requests: a must_allocate request can use the whole month.
    kind = rng.random(requests)
    windowed = (kind < WINDOW_SHARE) & ~must
    start = rng.integers(0, d, requests)
    end = np.minimum(d - 1, start + rng.integers(2, 15, requests))
    day_values = days.to_numpy()
    both = windowed & (kind < WINDOW_SHARE * 0.8)
    only_latest = windowed & ~both & (kind < WINDOW_SHARE * 0.9)
    only_earliest = windowed & ~both & ~only_latest
    earliest[both | only_earliest] = day_values[start[both | only_earliest]]
    latest[both | only_latest] = day_values[end[both | only_latest]]

    n_customers = max(1, requests // 5)
    customer = rng.integers(1, n_customers + 1, requests)
    width = max(4, len(str(n_customers)))
    services = np.array(SERVICES, dtype=object)[req_group // n_regions]
    region_names = _region_names(n_regions)
    table = pd.DataFrame(
        {
            "request_id": _ids("Q", requests),
            "customer_id": np.array([f"C{c:0{width}d}" for c in customer], dtype=object),
            "service": services,
            "region": np.array(region_names, dtype=object)[req_group % n_regions],
            "units": units,
            "priority": priority,
            "must_allocate": must,
            "preferred_resource_id": pd.array(preferred, dtype="str"),
            "earliest_date": earliest,
            "latest_date": latest,
        }
    )
    # Shuffle so ids are not sorted by group (like real landings), deterministically.
    shuffled = table.iloc[rng.permutation(requests)].reset_index(drop=True)
    shuffled["request_id"] = _ids("Q", requests)
    return shuffled


def _as_contract_dtypes(table: pd.DataFrame) -> pd.DataFrame:
    """Text columns as pandas str dtype, so written files and loaded frames agree."""
    out = table.copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = out[column].astype("str")
    return out


def generate_month(
    month: str, requests: int = 2000, resources: int = 120, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """Demo tables resources, availability and requests for `month`, deterministic in `seed`."""
    if requests < 1 or resources < 1:
        raise ValueError("generate_month needs at least one request and one resource.")
    check_data_month(month)
    rng = np.random.default_rng(seed)
    days = month_days(month)
    resource_table, daily_rate, group, n_regions = _generate_resources(rng, resources, days)
    availability, monthly, has_rows = _generate_availability(
        rng, daily_rate, resource_table["resource_id"].to_numpy(), days
    )
    capacity = np.where(has_rows, monthly, resource_table["capacity_units"].to_numpy())
    n_groups = len(SERVICES) * n_regions
    group_capacity = np.bincount(group, weights=capacity, minlength=n_groups)
    request_table = _generate_requests(
        rng, requests, resource_table, group, group_capacity, days
    )
    return {
        "resources": _as_contract_dtypes(resource_table),
        "availability": _as_contract_dtypes(availability),
        "requests": _as_contract_dtypes(request_table),
    }


def generate_actuals(month: str, allocation_rows: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Actuals (resource_id, request_id, actual_units) delivered against an allocation."""
    rng = np.random.default_rng([seed, int(month.replace("-", ""))])
    allocated = allocation_rows[allocation_rows["resource_id"].notna()]
    if "status" in allocated:
        allocated = allocated[allocated["status"].isin(["allocated", "pinned"])]
    planned = allocated["units"].to_numpy(dtype="int64")
    draw = rng.random(len(planned))
    # Most deliver as planned; some no-shows, some under- and over-delivery.
    factor = np.where(draw < 0.04, 0.0, np.where(draw < 0.80, 1.0, rng.uniform(0.6, 1.2, len(planned))))
    actual = np.rint(planned * factor).astype("int64")
    return pd.DataFrame(
        {
            "resource_id": allocated["resource_id"].astype("str").to_numpy(),
            "request_id": allocated["request_id"].astype("str").to_numpy(),
            "actual_units": actual,
        }
    ).astype({"resource_id": "str", "request_id": "str"})


def write_landing(home: Path, month: str, tables: dict[str, pd.DataFrame]) -> Path:
    """Write each table to `<home>/landing/<month>/<table>.parquet`; returns the folder.

    Every table is written to a temporary file first and only then renamed over its target (in
    TABLE_ORDER, actuals last), so a failed write (a full disk) leaves the landed files as they
    were, and a folder this call created is removed again."""
    folder = landing_folder(home, month)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    written: list[tuple[str, Path]] = []
    try:
        for name in sorted(tables, key=lambda t: (TABLE_ORDER.index(t) if t in TABLE_ORDER else 99, t)):
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
            os.close(fd)
            os.chmod(tmp, 0o644)  # landed inputs are read by the Dagster processes too (mkstemp makes 0600)
            written.append((tmp, folder / f"{name}.parquet"))
            try:
                tables[name].to_parquet(tmp, index=False)
            except OSError as exc:  # pyarrow names no file: name the one it was writing
                if exc.filename is None and exc.errno is not None:
                    raise OSError(exc.errno, os.strerror(exc.errno), str(folder / f"{name}.parquet")) from exc
                raise
        for tmp, target in written:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in written:
            Path(tmp).unlink(missing_ok=True)
        if created:
            try:
                folder.rmdir()
            except OSError:
                pass
        raise
    return folder
