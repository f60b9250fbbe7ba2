"""Time the export store on a synthetic month and print the timings as JSON.

    python -m bench.exports [--rows 100000] [--resources 5000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from resources.storage import ExportStore

MONTH = "2025-01"


def synthetic_rows(rows: int, resources: int, seed: int = 0) -> pd.DataFrame:
    """A month of allocation rows: ~85% allocated, some pinned, excluded and unallocated, a few risky texts."""
    rng = np.random.default_rng(seed)
    services = np.array(["compute", "storage", "network", "gpu"])
    regions = np.array(["eu-west", "eu-north", "us-east"])
    status = rng.choice(["allocated", "pinned", "unallocated", "excluded"], size=rows, p=[0.8, 0.05, 0.13, 0.02])
    with_resource = np.isin(status, ["allocated", "pinned"])
    resource = np.where(with_resource, np.char.add("res-", rng.integers(0, resources, rows).astype(str)), None)
    reason = np.where(status == "unallocated", "capacity_exhausted", np.where(status == "excluded", "excluded", None))
    customer = np.char.add("cust-", rng.integers(0, rows // 10 + 1, rows).astype(str)).astype(object)
    customer[::997] = "=HYPERLINK(\"http://example.com\")"
    asked = rng.integers(1, 100, rows)
    return pd.DataFrame(
        {
            "request_id": np.char.add("req-", np.arange(rows).astype(str)),
            "customer_id": customer,
            "service": rng.choice(services, rows),
            "region": rng.choice(regions, rows),
            "priority": rng.integers(1, 6, rows),
            "resource_id": resource,
            "units": np.where(with_resource, asked, 0),
            "requested_units": asked,
            "cost": np.where(with_resource, rng.choice([0, 10], rows), 0),
            "status": status,
            "reason": reason,
        }
    )


def timed(action) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return round(time.perf_counter() - start, 3), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--resources", type=int, default=5_000)
    args = parser.parse_args()
    rows = synthetic_rows(args.rows, args.resources)
    moved = rows.copy()
    shuffle = moved.index[moved["status"] == "allocated"][:: 20]
    moved.loc[shuffle, "resource_id"] = "res-0"
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        files = Path(tmp)  # exports go outside the home (check_target refuses the home folder)
        store = ExportStore(home)
        manifest = {"run_id": "bench", "actor": "bench", "metrics": {"objective": 1.0}}
        timings: dict[str, float] = {"rows": args.rows}
        timings["write_version_s"], _ = timed(lambda: store.write_version(MONTH, 1, rows, manifest))
        store.write_version(MONTH, 2, moved, manifest)
        timings["verify_s"], _ = timed(lambda: store.verify(MONTH, 1))
        timings["read_version_s"], _ = timed(lambda: store.read_version(MONTH, 1))
        sizes = {}
        for fmt in ("parquet", "csv", "xlsx"):
            out = files / f"all.{fmt}"
            timings[f"export_{fmt}_s"], _ = timed(lambda fmt=fmt, out=out: store.export(MONTH, fmt=fmt, out=out, version=1))
            sizes[f"{fmt}_mb"] = round(out.stat().st_size / 1e6, 2)
        timings["export_csv_filtered_s"], filtered = timed(
            lambda: store.export(MONTH, fmt="csv", out=files / "f.csv", version=1, service="compute", status="allocated")
        )
        timings["filtered_rows"] = filtered["rows"]
        timings["diff_s"], diff = timed(lambda: store.diff(MONTH, 1, 2))
        timings["diff_moved"] = diff["counts"]["moved"]
        timings["write_final_s"], _ = timed(lambda: store.write_final(MONTH, 2, {"finalized_by": "a", "approved_by": "b"}))
        print(json.dumps({**timings, **sizes}, indent=2))


if __name__ == "__main__":
    main()
