"""Pure steps of the monthly batch between the loader, the solver and the exports."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from batch.months import trailing_months
from batch.ports import HistoryReads
from solvers.advice import CapacityAdvice
from solvers.compiled import compile_instance
from solvers.explain import allocation_table
from solvers.greedy import greedy_fill, initial_assignment
from solvers.schema import AllocationInstance, Proposal, SolverParams

ROW_COLUMNS = ["month", "version", "request_id", "customer_id", "service", "region", "priority",
               "resource_id", "units", "requested_units", "cost", "status", "reason",
               "reason_detail"]


@dataclass
class CapacityPlan:
    """The preview of a month: demand against capacity, conflicts, an expected allocation."""

    month: str
    instance: AllocationInstance
    by_group: pd.DataFrame
    conflicts: pd.DataFrame
    fingerprint: str = ""
    expected: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": int(len(self.instance.requests)),
            "resources": int(len(self.instance.resources)),
            "eligible_pairs": int(len(self.instance.pairs)),
            "demand_units": int(self.instance.requests["units"].sum()),
            "capacity_units": int(self.instance.resources["capacity"].sum()),
            "groups_short_of_capacity": int((self.by_group["demand_units"] > self.by_group["capacity_units"]).sum()),
            "conflicts": int(len(self.conflicts)),
            **{f"expected_{k}": v for k, v in self.expected.items()},
        }


@dataclass
class PartTask:
    """One independent part of a month and the share of the time limit it gets."""

    index: int
    count: int
    instance: AllocationInstance
    params: SolverParams


@dataclass
class PartResult:
    """A solved part and what solving it cost (wall and CPU seconds, peak memory)."""

    proposal: Proposal
    usage: dict


@dataclass
class ProposalResult:
    """A solved month: the instance it was solved on, the proposal, its parameters and inputs."""

    instance: AllocationInstance
    proposal: Proposal
    params: dict[str, Any]
    fingerprint: str
    usage: dict[str, Any] = field(default_factory=dict)
    # Capacity advice of the proposal (batch/advice.py), set by the allocation_proposal asset.
    advice: CapacityAdvice | None = None


def phase_seconds(step_stats) -> dict[str, float]:
    """Wall seconds of each phase of a run, from Dagster's step statistics (parts added up)."""
    phases: dict[str, float] = {}
    for stat in step_stats:
        if stat.start_time is None or stat.end_time is None:
            continue
        phase = stat.step_key.split(".", 1)[0].split("[", 1)[0]
        phases[phase] = round(phases.get(phase, 0.0) + stat.end_time - stat.start_time, 3)
    return phases


def pack_parts(parts: list[AllocationInstance], max_parts: int) -> list[AllocationInstance]:
    """Independent parts packed into at most max_parts balanced groups (largest first)."""
    if len(parts) <= max_parts:
        return parts
    bins: list[list[AllocationInstance]] = [[] for _ in range(max_parts)]
    sizes = [0] * max_parts
    for part in sorted(parts, key=lambda p: len(p.pairs) + len(p.requests), reverse=True):
        lightest = sizes.index(min(sizes))
        bins[lightest].append(part)
        sizes[lightest] += len(part.pairs) + len(part.requests)
    return [_combine(group) for group in bins if group]


def _combine(group: list[AllocationInstance]) -> AllocationInstance:
    return AllocationInstance(
        month=group[0].month,
        requests=pd.concat([p.requests for p in group], ignore_index=True),
        resources=pd.concat([p.resources for p in group], ignore_index=True),
        pairs=pd.concat([p.pairs for p in group], ignore_index=True),
        pins={k: v for p in group for k, v in p.pins.items()},
        exclusions={r for p in group for r in p.exclusions},
        previous={k: v for p in group for k, v in p.previous.items()},
        window_blocked={r for p in group for r in p.window_blocked},
    )


def part_params(params: SolverParams, share_s: float) -> SolverParams:
    """A part's parameters: its share of the month's time limit, and of the deterministic budget."""
    share = share_s / params.time_limit_s
    work = None if params.deterministic_work is None else params.deterministic_work * share
    return replace(params, time_limit_s=share_s, deterministic_work=work)


def time_shares(parts: list[AllocationInstance], time_limit_s: float, floor_s: float = 0.2) -> list[float]:
    """Each part's share of the month's time limit, by size, never below floor_s."""
    sizes = [len(p.pairs) + len(p.requests) for p in parts]
    total = sum(sizes) or 1
    return [max(floor_s, time_limit_s * size / total) for size in sizes]


def demand_vs_capacity(instance: AllocationInstance) -> pd.DataFrame:
    """Demand and capacity per service and region, with the ratio that shows a shortage."""
    demand = (instance.requests.groupby(["service", "region"], observed=True)
              .agg(requests=("request_id", "size"), demand_units=("units", "sum"),
                   must_allocate_units=("units", lambda s: int(s[instance.requests.loc[s.index, "must_allocate"]].sum())))
              .reset_index())
    capacity = (instance.resources.groupby(["service", "region"], observed=True)
                .agg(resources=("resource_id", "size"), capacity_units=("capacity", "sum"))
                .reset_index())
    table = demand.merge(capacity, on=["service", "region"], how="outer").fillna(0)
    for col in ("requests", "demand_units", "must_allocate_units", "resources", "capacity_units"):
        table[col] = table[col].astype("int64")
    table["demand_ratio"] = (table["demand_units"] / table["capacity_units"].where(table["capacity_units"] > 0)).round(3)
    return table.sort_values(["service", "region"]).reset_index(drop=True)


def conflicts(instance: AllocationInstance) -> pd.DataFrame:
    """Requests that no resource can serve, and must_allocate groups short of capacity."""
    req = instance.requests
    served = set(instance.pairs["request_id"])
    lonely = req.loc[~req["request_id"].isin(served), ["request_id", "service", "region", "must_allocate"]].copy()
    lonely["conflict"] = [
        "window_unavailable" if rid in instance.window_blocked else "no_eligible_resource"
        for rid in lonely["request_id"]
    ]
    return lonely.reset_index(drop=True)


def allocation_rows(month: str, version: int, instance: AllocationInstance, proposal: Proposal) -> pd.DataFrame:
    """The export rows of SPEC §6: one per request, request fields joined to the allocation."""
    req = instance.requests[["request_id", "customer_id", "service", "region", "priority", "units"]].rename(
        columns={"units": "requested_units"})
    rows = req.merge(proposal.allocations, on="request_id", how="left", validate="one_to_one")
    rows.insert(0, "month", month)
    rows.insert(1, "version", version)
    rows["units"] = rows["units"].fillna(0).astype("int64")
    rows["cost"] = rows["cost"].fillna(0).astype("int64")
    rows["priority"] = rows["priority"].astype("int64")
    rows["requested_units"] = rows["requested_units"].astype("int64")
    rows["reason_detail"] = rows["detail"] if "detail" in rows.columns else None
    return rows[ROW_COLUMNS]


def final_map(rows: pd.DataFrame | None) -> dict[str, str]:
    """request_id -> resource_id of an allocation (continuity and warm starts)."""
    if rows is None or rows.empty:
        return {}
    placed = rows[rows["resource_id"].notna()]
    return dict(zip(placed["request_id"].astype(str), placed["resource_id"].astype(str)))


def expected_allocation(instance: AllocationInstance, params) -> pd.DataFrame:
    """The preview's expected allocation: the solver's greedy warm start, in a fraction of a second."""
    compiled = compile_instance(instance, params)
    return allocation_table(instance, compiled, greedy_fill(compiled, initial_assignment(compiled)))


def trailing_metrics(store: HistoryReads, month: str, months_back: int = 6) -> list[dict[str, Any]]:
    """The latest version's metrics of each of the trailing months (for anomaly checks)."""
    known = store.history(trailing_months(month, months_back))
    return [{"month": previous, **known[previous]["versions"][-1]["metrics"]}
            for previous in trailing_months(month, months_back) if previous in known]
