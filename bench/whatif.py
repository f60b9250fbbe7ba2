"""What-if benchmark: python -m bench.whatif [--scale-requests N --scale-resources M] --json OUT

Two months, each landed and solved into version 1 straight through the export store: the demo month
(`batch-admin demo-data M --requests 2000 --resources 120 --seed 7`) and a bench.scale month (20,000
requests, 1,000 resources). Per month, three what-ifs (more capacity on the best advised resource, an
exclusion, a pin elsewhere) are timed through batch.whatif, side by side with a cold solve of the
changed month (no previous version, same parameters) and its gap.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import pandas as pd

from batch.demo_data import write_landing
from batch.inputs import load_landing
from batch.params import params_snapshot
from batch.plan import allocation_rows
from batch.whatif import Change, what_if
from bench import scale
from bench.cli import DEMO_MONTH, demo_tables, month_options
from resources.storage import ExportStore
from solvers import SolverParams, build_instance, solve
from solvers.advice import capacity_advice

MONTH = DEMO_MONTH


def month_with_version(home: Path, month: str, tables: dict[str, pd.DataFrame], params: SolverParams) -> ExportStore:
    """Land `tables` under `home`, solve the month and write the result as version 1."""
    write_landing(home, month, tables)
    landed = load_landing(home, month)
    instance = build_instance(month, landed.requests, landed.resources, availability=landed.availability,
                              eligibility=landed.eligibility, params=params)
    proposal = solve(instance, params)
    exports = ExportStore(home)
    exports.write_version(month, 1, allocation_rows(month, 1, instance, proposal), {
        "parameters": params_snapshot(params), "input_fingerprint": landed.fingerprint, "status": "proposed",
        "solver": {"objective": proposal.objective, "bound": proposal.bound}})
    return exports


def bench_month(name: str, tables: dict[str, pd.DataFrame], params: SolverParams) -> dict[str, Any]:
    """Three what-ifs on one month, each beside a cold solve of the changed month."""
    with TemporaryDirectory() as folder:
        home = Path(folder)
        started = time.perf_counter()
        exports = month_with_version(home, MONTH, tables, params)
        version_seconds = time.perf_counter() - started
        rows = exports.read_version(MONTH, 1)
        landed = load_landing(home, MONTH)
        instance = build_instance(MONTH, landed.requests, landed.resources, availability=landed.availability,
                                  eligibility=landed.eligibility, params=params)
        best = capacity_advice(instance, params, rows).top(1).iloc[0]
        served = rows[rows["status"] == "allocated"].iloc[len(rows) // 3]
        pairs = instance.pairs
        elsewhere = pairs[(pairs["request_id"] == served["request_id"])
                          & (pairs["resource_id"] != served["resource_id"])].iloc[0]
        changes = {
            f"capacity {best['resource_id']}=+{int(best['holds_for_units'])}":
                Change(capacity={str(best["resource_id"]): int(best["holds_for_units"])}),
            f"exclude {served['request_id']}": Change(exclusions={str(served["request_id"])}),
            f"pin {served['request_id']}={elsewhere['resource_id']}":
                Change(pins={str(served["request_id"]): str(elsewhere["resource_id"])}),
        }
        results = []
        for label, change in changes.items():
            answer = what_if(home, exports, MONTH, change)
            cold_instance = _changed(instance, change)
            cold_started = time.perf_counter()
            cold = solve(cold_instance, params)
            cold_seconds = time.perf_counter() - cold_started
            results.append({
                "change": label, "whatif_seconds": answer["seconds"]["total"],
                "whatif_solve_seconds": answer["seconds"]["solve"], "parts": answer["parts"],
                "whatif_objective": answer["after"]["objective"], "whatif_part_gap": answer["solved"]["gap"],
                "moves": answer["moves"]["count"], "cold_seconds": round(cold_seconds, 3),
                "cold_objective": cold.objective, "cold_gap": cold.gap,
                "speedup": round(cold_seconds / max(answer["seconds"]["total"], 1e-9), 1),
            })
            print(name, results[-1], flush=True)
        return {"month": name, "requests": len(rows), "version_seconds": round(version_seconds, 1),
                "whatifs": results}


def _changed(instance, change: Change):
    """The month with the change applied, for the cold solve (no previous version: nothing to warm-start)."""
    resources = instance.resources.copy()
    for resource, delta in change.capacity.items():
        resources.loc[resources["resource_id"] == resource, "capacity"] += delta
    return replace(instance, resources=resources, pins={**instance.pins, **change.pins},
                   exclusions=instance.exclusions | change.exclusions, previous={})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    month_options(parser, requests=20_000, resources=1_000, time_limit=30.0, seed=None, prefix="scale-")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    params = SolverParams(time_limit_s=args.time_limit, seed=7)
    report = [bench_month("demo 2000 x 120", demo_tables(MONTH), params)]
    if args.scale_requests:
        report.append(bench_month(f"scale {args.scale_requests:,} x {args.scale_resources:,}",
                                  scale.generate_month(args.scale_requests, args.scale_resources, seed=0), params))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
