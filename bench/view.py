"""Server time of the admin view's months and month pages on a big home, printed as JSON.

    python -m bench.view [--months 24] [--requests 20000] [--resources 1000] [--versions 3] [--repeat 20]

The home holds `--months` months of demo inputs with `--versions` versions each (allocations made
here by a first-fit pass, not the solver: the view's time does not depend on how they were made).
Each page is requested in-process (Starlette's TestClient), so the time is the server's: context,
template and response. "cold" is a month's first view after a change (its health and inputs are
computed), "warm" the views after it (batch_view/memo.py keeps them while the month is unchanged).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from starlette.testclient import TestClient

from batch.demo_data import generate_month, write_landing
from batch.metrics import version_metrics
from batch.months import next_month
from batch_view.app import create_app
from batch_view.memo import Memo
from batch_view.sources import Sources
from resources.control_store import ControlStore
from resources.settings import Settings
from resources.storage import ExportStore
from solvers.eligibility import monthly_capacity

FIRST_MONTH = "2025-01"


def first_fit(tables: dict[str, pd.DataFrame], month: str, version: int, seed: int) -> pd.DataFrame:
    """Allocation rows of one version: requests in a shuffled order onto their group's largest resource
    while it has room; the rest unallocated for lack of capacity."""
    resources = tables["resources"].assign(
        capacity=monthly_capacity(tables["resources"], tables["availability"])
        .reindex(tables["resources"]["resource_id"]).to_numpy())
    biggest = resources.sort_values("capacity").groupby(["service", "region"]).tail(1)
    rows = tables["requests"][["request_id", "customer_id", "service", "region", "priority", "units"]]
    rows = rows.sample(frac=1, random_state=seed).merge(
        biggest[["service", "region", "resource_id", "capacity"]], on=["service", "region"], how="left")
    fits = rows.groupby("resource_id")["units"].cumsum() <= rows["capacity"]
    rows["resource_id"] = rows["resource_id"].where(fits, None)
    rows["units"] = rows["units"].where(fits, 0)
    rows["status"] = np.where(fits, "allocated", "unallocated")
    rows["reason"] = np.where(fits, None, "capacity_exhausted")
    rows["cost"] = 0
    rows.insert(0, "month", month)
    rows.insert(1, "version", version)
    return rows.drop(columns="capacity").sort_values("request_id", ignore_index=True)


def build_home(home: Path, months: int, requests: int, resources: int, versions: int) -> list[str]:
    """Land `months` months and write `versions` versions of each; returns the months."""
    os.environ["BATCH_ADMIN_HOME"] = str(home)
    settings = Settings.from_env()
    settings.export()
    store, exports = ControlStore(settings.control_url), ExportStore(home)
    keys = [FIRST_MONTH]
    while len(keys) < months:
        keys.append(next_month(keys[-1]))
    for index, month in enumerate(keys):
        tables = generate_month(month, requests, resources, seed=index)
        write_landing(home, month, tables)
        capacity = tables["resources"].assign(capacity=monthly_capacity(tables["resources"], tables["availability"])
                                              .reindex(tables["resources"]["resource_id"]).to_numpy())
        for version in range(1, versions + 1):
            rows = first_fit(tables, month, version, seed=version)
            metrics = version_metrics(rows, capacity, tables["requests"])
            note = None if version == 1 else f"iteration {version}"
            info = exports.write_version(month, version, rows, {
                "run_id": f"bench-{month}-{version}", "actor": "alice", "note": note, "parameters": {},
                "input_fingerprint": "bench", "solver": {"status": "FEASIBLE"}, "metrics": metrics})
            store.record_version(month, version, "alice", note, f"bench-{month}-{version}", str(info.path), {},
                                 metrics, "bench")
    store.dispose()
    return keys


def timed(client: TestClient, path: str) -> float:
    started = time.perf_counter()
    answer = client.get(path)
    elapsed = time.perf_counter() - started
    assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return elapsed


def summary(seconds: list[float]) -> dict[str, Any]:
    ordered = sorted(seconds)
    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p95_ms": round(ordered[max(0, int(round(0.95 * len(ordered))) - 1)] * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1)}


def change(store: ControlStore, month: str, index: int) -> None:
    """A change, as a sensor's alert makes one: an audit entry that moves the chain's head (the months page's
    figures are computed again after it)."""
    store.add_alert(month, "bench_view", "info", "a change", {}, dedup_key=f"bench_view:{month}:{index}")


def measure(keys: list[str], repeat: int) -> dict[str, Any]:
    """Server times of the months page and of month pages (the newest months, as people open them): cold is
    the first view after a change (for a month page: with nothing kept, as after a new version or new
    landed files), warm the views after it."""
    sources = Sources.open(Settings.from_env(), "http://localhost:3001")
    shown = keys[-min(len(keys), 6):]
    app = create_app(sources)
    with TestClient(app) as client:
        timed(client, "/")  # imports and the first connection, paid once per process
        months_cold, month_cold = [], []
        for index in range(repeat):
            change(sources.store, shown[index % len(shown)], index)
            months_cold.append(timed(client, "/"))
            app.state.memo = Memo()
            month_cold.append(timed(client, f"/month/{shown[index % len(shown)]}"))
        for month in shown:
            timed(client, f"/month/{month}")
        months_warm = [timed(client, "/") for _ in range(repeat)]
        month_warm = [timed(client, f"/month/{month}") for _ in range(repeat) for month in shown]
    return {"months_page_cold": summary(months_cold), "months_page_warm": summary(months_warm),
            "month_page_cold": summary(month_cold), "month_page_warm": summary(month_warm)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--resources", type=int, default=1_000)
    parser.add_argument("--versions", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_view_") as folder:
        started = time.perf_counter()
        keys = build_home(Path(folder) / "home", args.months, args.requests, args.resources, args.versions)
        built = time.perf_counter() - started
        result = {"months": args.months, "requests": args.requests, "resources": args.resources,
                  "versions": args.versions, "build_seconds": round(built, 1), **measure(keys, args.repeat)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
