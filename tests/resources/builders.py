"""Builders of allocation rows and manifests for the storage tests."""

from __future__ import annotations

import pandas as pd

MONTH = "2025-03"


def allocation_rows(specs: list[tuple[str, str | None]], *, service: str = "compute", region: str = "eu") -> pd.DataFrame:
    """Rows for (request_id, resource_id or None) pairs; None means unallocated for lack of capacity."""
    records = []
    for index, (request_id, resource_id) in enumerate(specs):
        records.append(
            {
                "request_id": request_id,
                "customer_id": f"cust-{index % 3}",
                "service": service,
                "region": region,
                "priority": 1 + index % 5,
                "resource_id": resource_id,
                "units": 10 + index,
                "requested_units": 10 + index,
                "cost": 0 if resource_id is None else 10,
                "status": "allocated" if resource_id else "unallocated",
                "reason": None if resource_id else "capacity_exhausted",
            }
        )
    return pd.DataFrame.from_records(records)


def caller_manifest(**overrides) -> dict:
    """The fields the pipeline passes to write_version."""
    fields = {
        "run_id": "run-1",
        "actor": "alice",
        "note": "first proposal",
        "parameters": {"weights": {"1": 1000, "2": 300}, "seed": 0},
        "input_fingerprint": "sha256:abc",
        "solver": {"status": "OPTIMAL", "objective": 1000.0, "bound": 1000.0, "gap": 0.0},
        "metrics": {"objective": 1000.0, "utilization": {"compute/eu": 0.5}},
    }
    return {**fields, **overrides}


SERVICES = ("consulting", "installation", "maintenance", "repair", "training")
REGIONS = ("east", "north", "south")


def month_rows(requests: int = 2000, resources: int = 120) -> tuple[pd.DataFrame, list[dict]]:
    """A demo-sized month: rows of every status with long reasons, and the manifest's capacity per group."""
    records = []
    for i in range(requests):
        service, region = SERVICES[i % 5], REGIONS[(i // 5) % 3]
        resource = f"R{(i * 7) % resources:04d}"
        kind = ("allocated", "allocated", "unallocated", "allocated", "pinned", "excluded", "allocated")[i % 7]
        placed = kind in ("allocated", "pinned")
        reason = None if placed else "excluded" if kind == "excluded" else \
            ("capacity_exhausted", "cost_exceeds_value")[i % 2]
        detail = None if reason in (None, "excluded") else (
            f"eligible resources full: {resource} (0 of 66 units left, needs 3; filled with priorities 1-5), "
            f"R0044 (0 of 66 units left, needs 3; filled with priorities 2-5) and 10 more")
        records.append({"request_id": f"Q{i:05d}", "customer_id": f"C{i % 300:04d}", "service": service,
                        "region": region, "priority": 1 + i % 5, "resource_id": resource if placed else None,
                        "units": 1 + i % 6 if placed else 0, "requested_units": 1 + i % 6,
                        "cost": 10 if placed else 0, "status": kind, "reason": reason, "reason_detail": detail})
    groups = [{"service": s, "region": r, "resources": 8, "capacity": 700, "planned_units": 500,
               "utilization": 500 / 700} for s in SERVICES for r in REGIONS]
    return pd.DataFrame.from_records(records), groups
