"""GAP benchmark: python -m bench.gap --time-limit S [--best-known CSV] --json OUT FILE..."""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from bench.baselines import greedy_only, plain_cpsat
from solvers import InfeasibleError, NoSolutionError, SolverParams, solve, validation
from solvers.compiled import NO_PAIR, compile_instance
from solvers.gap_format import GAP_PARAMS_WEIGHTS, gap_cost, gap_instance

DEFAULT_BEST_KNOWN = Path("/work/shared/benchmarks/gap/best_known.csv")


def instance_name(path: Path) -> str:
    """'set/file' as in best_known.csv."""
    return f"{path.parent.name}/{path.name}"


def gap_pct(cost: int | None, best: int | None) -> float | None:
    """Percentage above the best known cost."""
    if cost is None or best is None:
        return None
    return round(100.0 * (cost - best) / best, 4)


def run_instance(
    path: Path, time_limit: float, best_known: dict[str, int], baselines: tuple[str, ...] = ("plain_cpsat", "greedy")
) -> list[dict]:
    """Our solver and the chosen baselines (plain CP-SAT, greedy) on one instance."""
    name = instance_name(path)
    best = best_known.get(name)
    # GAP is judged on cost: the objective 1000 x jobs - cost makes any relative tolerance loose.
    params = SolverParams(weights=GAP_PARAMS_WEIGHTS, time_limit_s=time_limit, gap_tolerance=0.0)
    inst = gap_instance(path, params)
    rows = []
    started = time.perf_counter()
    try:
        proposal = solve(inst, params)
        validation.assert_no_resource_over_capacity(inst, proposal.allocations)
        validation.assert_only_eligible_pairs(inst, proposal.allocations)
        validation.assert_must_allocate_served(inst, proposal.allocations)
        cost, feasible, status = gap_cost(inst, proposal.allocations), True, proposal.status
    except (InfeasibleError, NoSolutionError):
        cost, feasible, status = None, False, "NO_SOLUTION"
    rows.append({"solver": "ours", "instance": name, "cost": cost, "feasible": feasible, "status": status,
                 "seconds": round(time.perf_counter() - started, 2), "gap_to_best_known_pct": gap_pct(cost, best)})
    c = compile_instance(inst, params)
    runs = {"plain_cpsat": lambda: plain_cpsat(c, time_limit), "greedy": lambda: greedy_only(c)}
    for solver in baselines:
        assign, seconds = runs[solver]()
        feasible = assign is not None and bool((assign != NO_PAIR).all())
        cost = int(c.pair_cost[assign].sum()) if feasible else None
        rows.append({"solver": solver, "instance": name, "cost": cost, "feasible": feasible, "status": None,
                     "seconds": round(seconds, 2), "gap_to_best_known_pct": gap_pct(cost, best)})
    return rows


def summary(rows: list[dict]) -> dict:
    """Mean and worst gap per solver over feasible runs, and the count of infeasible ones."""
    out = {}
    for solver in sorted({r["solver"] for r in rows}):
        gaps = [r["gap_to_best_known_pct"] for r in rows if r["solver"] == solver and r["feasible"]
                and r["gap_to_best_known_pct"] is not None]
        out[solver] = {"instances": sum(r["solver"] == solver for r in rows),
                       "no_feasible": sum(r["solver"] == solver and not r["feasible"] for r in rows),
                       "mean_gap_pct": round(float(np.mean(gaps)), 4) if gaps else None,
                       "worst_gap_pct": round(float(np.max(gaps)), 4) if gaps else None}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--best-known", type=Path, default=DEFAULT_BEST_KNOWN)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--baselines", default="plain_cpsat,greedy", help="comma list, or empty")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    best_known = {}
    if args.best_known and args.best_known.exists():
        with args.best_known.open() as handle:
            best_known = {row["instance"]: int(row["best_known_cost"]) for row in csv.DictReader(handle)}
    rows = []
    for path in args.files:
        for row in run_instance(path, args.time_limit, best_known, tuple(b for b in args.baselines.split(",") if b)):
            rows.append(row)
            print(json.dumps(row), flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
            args.json.with_suffix(".summary.json").write_text(json.dumps(summary(rows), indent=1))
    print(json.dumps(summary(rows), indent=1))


if __name__ == "__main__":
    main()
