"""Split a month into independent parts (connected components of the pair graph) and merge back."""

from __future__ import annotations

import numpy as np
import pandas as pd

from solvers.components import component_labels
from solvers.optimality import relative_gap
from solvers.schema import (
    STOP_OPTIMAL,
    STOP_TIME_LIMIT,
    STOP_TOLERANCE,
    STOP_WORK_BUDGET,
    AllocationInstance,
    Proposal,
)


def split_instance(instance: AllocationInstance, touching: tuple[set[str], set[str]] | None = None,
                   ) -> list[AllocationInstance]:
    """Independent parts: no request or resource is shared, so each part can be solved alone.

    Requests without any pair, and resources without any pair, go to the first part (they only
    need a reason). Parts are ordered by their first request in instance.requests. With
    `touching` (request ids, resource ids), only the parts holding one of them are built.
    """
    request_ids = instance.requests["request_id"]
    resource_ids = instance.resources["resource_id"]
    known, rows, cols = _pair_indices(instance)
    labels = component_labels(len(request_ids), len(resource_ids), rows, cols)
    count = max(labels.count, 1)
    request_part, resource_part = np.maximum(labels.request, 0), np.maximum(labels.resource, 0)
    pair_part = request_part[rows]
    wanted: list[int] = list(range(count))
    if touching is not None:
        wanted = sorted({*request_part[request_ids.isin(list(touching[0])).to_numpy()].tolist(),
                         *resource_part[resource_ids.isin(list(touching[1])).to_numpy()].tolist()})
    parts = []
    for k in wanted:
        requests = instance.requests[request_part == k].reset_index(drop=True)
        ids = set(requests["request_id"])
        parts.append(
            AllocationInstance(
                month=instance.month,
                requests=requests,
                resources=instance.resources[resource_part == k].reset_index(drop=True),
                pairs=instance.pairs[known].iloc[np.flatnonzero(pair_part == k)].reset_index(drop=True),
                pins={r: v for r, v in instance.pins.items() if r in ids},
                exclusions={r for r in instance.exclusions if r in ids},
                previous={r: v for r, v in instance.previous.items() if r in ids},
                window_blocked={r for r in instance.window_blocked if r in ids},
            )
        )
    return parts


def part_count(instance: AllocationInstance) -> int:
    """How many independent parts split_instance() makes of the month."""
    _, rows, cols = _pair_indices(instance)
    return max(component_labels(len(instance.requests), len(instance.resources), rows, cols).count, 1)


def _pair_indices(instance: AllocationInstance) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs naming a known request and resource (mask), and their request and resource positions."""
    rows = pd.Index(instance.requests["request_id"]).get_indexer(instance.pairs["request_id"])
    cols = pd.Index(instance.resources["resource_id"]).get_indexer(instance.pairs["resource_id"])
    known = (rows >= 0) & (cols >= 0)
    return known, rows[known], cols[known]


def merge_proposals(instance: AllocationInstance, parts: list[Proposal]) -> Proposal:
    """One proposal for the month from the proposals of its parts (objectives and bounds add up)."""
    allocations = pd.concat([p.allocations for p in parts], ignore_index=True)
    position = pd.Index(instance.requests["request_id"]).get_indexer(allocations["request_id"])
    allocations = allocations.iloc[np.argsort(position, kind="stable")].reset_index(drop=True)
    objective = float(sum(p.objective for p in parts))
    bound = float(sum(p.bound for p in parts))
    model_size: dict[str, int] = {}
    for p in parts:
        for key, value in p.model_size.items():
            model_size[key] = model_size.get(key, 0) + value
    return Proposal(
        allocations=allocations,
        objective=objective,
        bound=bound,
        gap=relative_gap(objective, bound),
        status="OPTIMAL" if all(p.status == "OPTIMAL" for p in parts) else "FEASIBLE",
        solve_seconds=float(sum(p.solve_seconds for p in parts)),
        model_size=model_size,
        parts=len(parts),
        conflicts=[c for p in parts for c in p.conflicts],
        stop_reason=_merged_stop_reason([p.stop_reason for p in parts]),
        bound_kind="+".join(dict.fromkeys(k for p in parts for k in p.bound_kind.split("+") if k)),
        bound_note="; ".join(p.bound_note for p in parts if p.bound_note),
        churn=_merged_churn([p.churn for p in parts]),
        phase_seconds={key: round(sum(p.phase_seconds.get(key, 0.0) for p in parts), 3)
                       for key in dict.fromkeys(k for p in parts for k in p.phase_seconds)},
    )


def _merged_stop_reason(reasons: list[str]) -> str:
    """The month stopped for the weakest of its parts' reasons (a limit over the tolerance over optimal)."""
    for reason in (STOP_TIME_LIMIT, STOP_WORK_BUDGET, STOP_TOLERANCE, STOP_OPTIMAL):
        if reason in reasons:
            return reason
    return ""


def _merged_churn(parts: list[dict[str, float]]) -> dict[str, float]:
    """Counts added up over the parts; moved_share recomputed for the month."""
    if not any(parts):
        return {}
    merged = {key: sum(p.get(key, 0) for p in parts) for key in dict.fromkeys(k for p in parts for k in p)}
    merged["moved_share"] = merged["requests_moved"] / merged["previous_allocated"] if merged.get(
        "previous_allocated") else 0.0
    return merged
