"""Churn benchmark: python -m bench.churn --requests 20000 --resources 1000 --time-limit 20 --json OUT

A month of bench.scale solved once (the first version), then re-run with the same inputs and
with one request pinned onto another resource in use, with the first version as `previous`.
Ours (strict stability, the default) beside ours with a stability weight of 1 (the former
move_penalty), the greedy and plain CP-SAT, each re-run from scratch or from its own first
version, in one run: requests and units moved (solvers.churn.churn) and seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench.baselines import greedy_only, plain_cpsat
from bench.cli import month_options
from bench.scale import generate_month
from solvers import SolverParams, build_instance, solve, validation
from solvers.churn import churn
from solvers.compiled import NO_PAIR, compile_instance
from solvers.schema import AllocationInstance

MONTH = "2025-03"


def held(allocations: pd.DataFrame) -> dict[str, str]:
    """request_id -> resource_id of the allocated rows."""
    allocated = allocations.dropna(subset=["resource_id"])
    return dict(zip(allocated["request_id"], allocated["resource_id"]))


def one_pin(inst: AllocationInstance, allocations: pd.DataFrame, seed: int) -> tuple[str, str]:
    """An allocated request and another of its eligible resources that holds requests."""
    rng = np.random.default_rng(seed)
    now = held(allocations)
    pairs = inst.pairs[inst.pairs["request_id"].isin(list(now))]
    pairs = pairs[(pairs["resource_id"].to_numpy() != pairs["request_id"].map(now).to_numpy())
                  & pairs["resource_id"].isin(set(now.values()))]
    pick = pairs.iloc[int(rng.integers(len(pairs)))]
    return str(pick["request_id"]), str(pick["resource_id"])


def assignment_table(c, assign) -> pd.DataFrame:
    """A baseline's pair per request as request_id / resource_id / units rows."""
    allocated = assign != NO_PAIR
    chosen = np.where(allocated, assign, 0)
    return pd.DataFrame({"request_id": c.request_ids,
                         "resource_id": np.where(allocated, c.resource_ids[c.pair_resource[chosen]], None),
                         "units": np.where(allocated, c.pair_units[chosen], 0)})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    month_options(parser, requests=20_000, resources=1_000, time_limit=20.0)
    parser.add_argument("--baselines", default="greedy,plain_cpsat")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    tables = generate_month(args.requests, args.resources, args.seed)
    params = SolverParams(time_limit_s=args.time_limit, seed=args.seed)
    base = build_instance(MONTH, tables["requests"], tables["resources"], eligibility=tables["eligibility"],
                          params=params)
    units = dict(zip(base.requests["request_id"], base.requests["units"]))
    report: dict = {"requests": args.requests, "resources": args.resources, "time_limit_s": args.time_limit,
                    "runs": []}

    def record(solver: str, run: str, seconds: float, allocations: pd.DataFrame | None,
               previous: dict[str, str] | None, extra: dict | None = None) -> None:
        row = {"solver": solver, "run": run, "seconds": round(seconds, 2),
               **(churn(previous, allocations, units) if previous else {}), **(extra or {})}
        report["runs"].append(row)
        print(json.dumps(row), flush=True)

    pin = None
    for label, run_params in (("ours", params), ("ours_stability_1", replace(params, stability=1.0))):
        started = time.perf_counter()
        first = solve(base, run_params)
        first_seconds = time.perf_counter() - started
        record(label, "first", first_seconds, first.allocations, None,
               {"objective": first.objective, "gap_pct": round(100 * first.gap, 4), "stop_reason": first.stop_reason})
        previous = held(first.allocations)
        pin = pin or one_pin(base, first.allocations, args.seed)
        for run, pins in (("same_inputs", {}), ("one_pin", {pin[0]: pin[1]})):
            rerun = replace(base, previous=previous, pins=pins)
            started = time.perf_counter()
            second = solve(rerun, run_params)
            seconds = time.perf_counter() - started
            validation.assert_no_resource_over_capacity(rerun, second.allocations)
            validation.assert_pins_honoured(rerun, second.allocations)
            now = held(second.allocations)
            moved = {r for r, res in previous.items() if now.get(r) != res}
            displaced_only = all(previous[r] == pin[1] for r in moved - {pin[0]}) if pins else None
            record(label, run, seconds, second.allocations, previous,
                   {"seconds_vs_first_pct": round(100 * seconds / first_seconds, 1), "objective": second.objective,
                    "gap_pct": round(100 * second.gap, 4), "stop_reason": second.stop_reason,
                    "pin": list(pin) if pins else None, "only_pinned_and_displaced_moved": displaced_only})
    c = compile_instance(base, params)
    for name in [b for b in args.baselines.split(",") if b]:
        runs = {"greedy": lambda inst: greedy_only(compile_instance(inst, params)),
                "plain_cpsat": lambda inst: plain_cpsat(compile_instance(inst, params), args.time_limit)}[name]
        assign, seconds = runs(base)
        if assign is None:
            record(name, "first", seconds, None, None, {"note": "no solution within the time limit"})
            continue
        first = assignment_table(c, assign)
        record(name, "first", seconds, first, None, {"allocated": len(held(first))})
        previous = held(first)
        for run, pins in (("same_inputs", {}), ("one_pin", {pin[0]: pin[1]})):
            rerun = replace(base, pins=pins)
            assign, seconds = runs(rerun)
            if assign is None:
                record(name, run, seconds, None, None, {"note": "no solution within the time limit"})
                continue
            record(name, run, seconds, assignment_table(compile_instance(rerun, params), assign), previous)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
