"""Scale benchmark: python -m bench.scale --requests N --resources M --time-limit S [--cross-region F] --json OUT

A generated month with explicit eligibility (about 10 eligible resources per request, inside
groups of 50 resources, as for service and region; a pair consumes the request's units times
its resource's speed factor, 0.8 to 1.25) and demand about twice the capacity, solved
through build_instance + solve; compared with a reference bound (the LP when it has at most
--lp-max-pairs pairs, else the Lagrangian bound given --reference-seconds), plain CP-SAT and the
greedy alone. With --cross-region F, a share F of the requests take half of their options
in the next group, so the month is one component instead of one per group.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.baselines import greedy_only, plain_cpsat
from bench.cli import emit_json, month_options
from solvers import SolverParams, build_instance, solve, validation
from solvers.bound import lagrangian_bound, lp_relaxation
from solvers.compiled import compile_instance
from solvers.greedy import greedy_fill, initial_assignment
from solvers.optimality import relative_gap

GROUP_SIZE = 50
OPTIONS = 10


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate_month(
    n_requests: int, n_resources: int, seed: int = 0, cross_region: float = 0.0
) -> dict[str, pd.DataFrame]:
    """Requests, resources and explicit eligibility tables in loader dtypes (whole arrays, no loop per request)."""
    rng = np.random.default_rng(seed)
    units = rng.integers(1, 21, n_requests)
    demand = units.sum()
    capacity = np.maximum(1, rng.uniform(0.5, 1.5, n_resources) * 0.5 * demand / n_resources).astype(np.int64)
    groups = max(n_resources // GROUP_SIZE, 1)
    request_ids = np.array([f"Q{k:06d}" for k in range(n_requests)], dtype=object)
    resource_ids = np.array([f"R{k:05d}" for k in range(n_resources)], dtype=object)
    requests = pd.DataFrame({
        "request_id": request_ids, "customer_id": "C", "service": "s", "region": "r",
        "units": units.astype(np.int64),
        "priority": rng.choice([1, 2, 3, 4, 5], n_requests, p=[0.1, 0.2, 0.3, 0.2, 0.2]).astype(np.int64),
        "must_allocate": False, "preferred_resource_id": pd.NA,
        "earliest_date": pd.NaT, "latest_date": pd.NaT,
    })
    resources = pd.DataFrame({"resource_id": resource_ids, "name": resource_ids, "service": "s",
                              "region": "r", "capacity_units": capacity})
    group = rng.integers(0, groups, n_requests)
    group_size = min(GROUP_SIZE, n_resources)
    offsets = np.argsort(rng.random((n_requests, group_size)), axis=1)[:, :OPTIONS]
    home = group[:, None] * group_size
    if cross_region > 0:
        # Half the options of a share of the requests lie in the next group (a neighbouring region).
        crossing = rng.random(n_requests) < cross_region
        shift = np.zeros_like(offsets)
        shift[:, OPTIONS // 2:] = group_size
        home = home + np.where(crossing[:, None], shift, 0)
    chosen = (home + offsets) % n_resources
    # A resource's speed scales the capacity a request consumes there (slower hardware, more units).
    speed = rng.uniform(0.8, 1.25, n_resources)
    pair_units = np.maximum(1, np.rint(units[:, None] * speed[chosen])).astype(np.int64)
    eligibility = pd.DataFrame({
        "request_id": np.repeat(request_ids, chosen.shape[1]),
        "resource_id": resource_ids[chosen.reshape(-1)],
        "cost": rng.integers(0, 40, chosen.size).astype(np.int64),
        "units": pd.array(pair_units.reshape(-1), dtype="Int64"),
    })
    return {"requests": requests, "resources": resources, "eligibility": eligibility}


def reference_bound(c, lp_max_pairs: int, seconds: float) -> tuple[float, str]:
    """The yardstick: the LP optimum when the month has at most lp_max_pairs pairs, else the
    Lagrangian bound after `seconds` of subgradient steps (valid for any prices, never below the
    LP optimum, so a gap against it is pessimistic by what the subgradient has not closed)."""
    if c.num_pairs <= lp_max_pairs:
        return lp_relaxation(c, 3600.0).bound, "lp"
    pinned = initial_assignment(c)
    free_pairs = np.flatnonzero(pinned[c.pair_request] == -1)
    greedy = greedy_fill(c, pinned)
    lower = float(c.objective(greedy)) - float(c.objective(pinned))
    bound = lagrangian_bound(c, free_pairs, c.capacity - c.load(pinned), lower, time.perf_counter() + seconds)
    value = float(c.objective(pinned)) + bound.value(c.capacity - c.load(pinned), np.arange(c.num_requests),
                                                     np.arange(len(c.capacity)))
    return value, f"lagrangian ({bound.iterations} iterations)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    month_options(parser, requests=20_000, resources=1_000, time_limit=60.0)
    parser.add_argument("--baselines", default="greedy,plain_cpsat", help="comma list, or empty")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--cross-region", type=float, default=0.0, help="share of requests with options in two groups")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lp-max-pairs", type=int, default=3_000_000)
    parser.add_argument("--reference-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    report: dict = {"requests": args.requests, "resources": args.resources, "time_limit_s": args.time_limit,
                    "cross_region": args.cross_region, "workers": args.workers}
    phase = {}
    t = time.perf_counter()
    tables = generate_month(args.requests, args.resources, args.seed, args.cross_region)
    phase["generate_s"] = time.perf_counter() - t
    params = SolverParams(time_limit_s=args.time_limit, seed=args.seed, workers=args.workers)

    t = time.perf_counter()
    inst = build_instance("2025-03", tables["requests"], tables["resources"],
                          eligibility=tables["eligibility"], params=params)
    phase["build_instance_s"] = time.perf_counter() - t
    t = time.perf_counter()
    proposal = solve(inst, params)
    phase["solve_s"] = time.perf_counter() - t
    report["peak_memory_after_solve_mb"] = round(peak_memory_mb(), 1)
    t = time.perf_counter()
    validation.assert_no_resource_over_capacity(inst, proposal.allocations)
    validation.assert_only_eligible_pairs(inst, proposal.allocations)
    validation.assert_one_row_per_request(inst, proposal.allocations)
    phase["validate_s"] = time.perf_counter() - t
    report["ours"] = {"objective": proposal.objective, "solver_bound": proposal.bound,
                      "solver_bound_kind": proposal.bound_kind, "solver_bound_note": proposal.bound_note,
                      "solver_gap_pct": round(100 * proposal.gap, 4), "stop_reason": proposal.stop_reason,
                      "status": proposal.status, "model_size": proposal.model_size,
                      "solver_phases_s": proposal.phase_seconds,
                      "allocated": int(proposal.allocations["resource_id"].notna().sum())}
    report["whole_run_s"] = round(phase["build_instance_s"] + phase["solve_s"], 2)

    t = time.perf_counter()
    c = compile_instance(inst, params)
    lp, kind = reference_bound(c, args.lp_max_pairs, args.reference_seconds)
    phase["reference_bound_s"] = time.perf_counter() - t
    report["reference_bound"], report["reference_bound_kind"] = lp, kind
    report["ours"]["gap_to_reference_pct"] = round(100 * relative_gap(proposal.objective, lp), 4)
    for name in [b for b in args.baselines.split(",") if b]:
        if name == "greedy":
            assign, seconds = greedy_only(c)
        else:
            assign, seconds = plain_cpsat(c, args.time_limit, workers=args.workers)
        objective = float(c.objective(assign)) if assign is not None else None
        report[name] = {"objective": objective, "seconds": round(seconds, 2),
                        "gap_to_reference_pct": round(100 * relative_gap(objective, lp), 4) if objective is not None else None}
        report["peak_memory_mb"] = round(peak_memory_mb(), 1)
    report["phases"] = {k: round(v, 2) for k, v in phase.items()}
    report["peak_memory_mb"] = round(peak_memory_mb(), 1)
    emit_json(report, args.json, indent=1)


if __name__ == "__main__":
    main()
