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
