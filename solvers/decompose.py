"""Split a month into independent parts (connected components of the pair graph) and merge back."""

from __future__ import annotations

import numpy as np
import pandas as pd

from solvers.components import component_labels
from solvers.model import relative_gap
from solvers.schema import AllocationInstance, Proposal


def split_instance(instance: AllocationInstance) -> list[AllocationInstance]:
    """Independent parts: no request or resource is shared, so each part can be solved alone.

    Requests without any pair, and resources without any pair, go to the first part (they only
    need a reason). Parts are ordered by their first request in instance.requests.
    """
    request_ids = instance.requests["request_id"]
    resource_ids = instance.resources["resource_id"]
    n, m = len(request_ids), len(resource_ids)
    rows = pd.Index(request_ids).get_indexer(instance.pairs["request_id"])
    cols = pd.Index(resource_ids).get_indexer(instance.pairs["resource_id"])
    known = (rows >= 0) & (cols >= 0)
    rows, cols = rows[known], cols[known]
    labels = component_labels(n, m, rows, cols)
    count = max(labels.count, 1)
    request_part, resource_part = np.maximum(labels.request, 0), np.maximum(labels.resource, 0)
    pair_part = request_part[rows]
    parts = []
    for k in range(count):
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
    )
