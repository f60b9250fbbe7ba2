"""Demo month benchmark: python -m bench.demo [--month YYYY-MM] [--seed N] [--requests 2000] [--resources 120] [--time-limit 30] [--repeat 3] --json OUT

The month `batch-admin demo-data` generates (batch.demo_data.generate_month, derived pairs),
solved by solve() with the default gap_tolerance (1e-4) and with none, beside plain CP-SAT and
the greedy alone in the same run; wall seconds, stop reason and gap to each run's bound.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from batch.demo_data import generate_month
from bench.baselines import greedy_only, plain_cpsat
from bench.cli import month_options
from solvers import SolverParams, build_instance, solve, validation
from solvers.compiled import compile_instance
from solvers.optimality import relative_gap

MONTH = "2025-03"  # the month of the figures in docs/performance.md; `make demo` writes next month, seed 7


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    month_options(parser, requests=2000, resources=120, time_limit=30.0)
    parser.add_argument("--month", default=MONTH, help="YYYY-MM: the month generated (availability and dates depend on it)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of ours with the default tolerance")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    tables = generate_month(args.month, args.requests, args.resources, args.seed)
    params = SolverParams(time_limit_s=args.time_limit, seed=args.seed)
    inst = build_instance(args.month, tables["requests"], tables["resources"], tables["availability"], params=params)
    report: dict = {"requests": args.requests, "resources": args.resources, "pairs": len(inst.pairs),
                    "time_limit_s": args.time_limit, "runs": []}
    for label, run_params in [*[("ours", params)] * args.repeat, ("ours_no_tolerance", replace(params, gap_tolerance=0.0))]:
        started = time.perf_counter()
        proposal = solve(inst, run_params)
        seconds = time.perf_counter() - started
        validation.assert_no_resource_over_capacity(inst, proposal.allocations)
        validation.assert_must_allocate_served(inst, proposal.allocations)
        report["runs"].append({"solver": label, "gap_tolerance": run_params.gap_tolerance,
                               "wall_s": round(seconds, 2), "objective": proposal.objective,
                               "bound": proposal.bound, "bound_kind": proposal.bound_kind,
                               "gap_pct": round(100 * proposal.gap, 5), "stop_reason": proposal.stop_reason,
                               "phases_s": proposal.phase_seconds})
        print(json.dumps(report["runs"][-1]), flush=True)
    bound = min(run["bound"] for run in report["runs"])
    c = compile_instance(inst, params)
    for name, run in (("greedy", lambda: greedy_only(c)), ("plain_cpsat", lambda: plain_cpsat(c, args.time_limit))):
        assign, seconds = run()
        objective = float(c.objective(assign)) if assign is not None else None
        report["runs"].append({"solver": name, "wall_s": round(seconds, 2), "objective": objective,
                               "gap_to_best_bound_pct": round(100 * relative_gap(objective, bound), 5)
                               if objective is not None else None})
        print(json.dumps(report["runs"][-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
