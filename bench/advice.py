"""Capacity advice benchmark: python -m bench.advice [--requests N --resources M] --json OUT

On a bench.scale month (default 20,000 requests, 1,000 resources): the advice's time, then for the
top 5 advised resources the truth: the resource's independent part solved before and after adding
the advised units (same parameters, no previous version), its objective change against the
predicted value (expected_gain: shadow price x (advised units + the units the proposal leaves idle there);
lp_predicted is the price over the advised units alone). The demo month (2,000 x 120, seed 7) gives the top 3 of
docs/model.md.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import scale
from bench.cli import DEMO_MONTH, demo_tables, month_options
from solvers import SolverParams, build_instance, solve
from solvers.advice import capacity_advice, sentence
from solvers.decompose import split_instance


def demo_top(params: SolverParams, count: int = 3) -> list[str]:
    """The demo month's top places as sentences (docs/model.md's example)."""
    tables = demo_tables()
    month = build_instance(DEMO_MONTH, tables["requests"], tables["resources"], availability=tables["availability"],
                           params=params)
    advice = capacity_advice(month, params, solve(month, params).allocations)
    return [sentence(row) for row in advice.top(count).to_dict("records")]


def truth(requests: int, resources: int, params: SolverParams, places: int = 5) -> dict[str, Any]:
    """Advice on a scale month, and the re-solve of each top place's part with the advised units."""
    tables = scale.generate_month(requests, resources, seed=0)
    month = build_instance("2026-12", tables["requests"], tables["resources"], eligibility=tables["eligibility"],
                           params=params)
    started = time.perf_counter()
    proposal = solve(month, params)
    solve_seconds = time.perf_counter() - started
    advice = capacity_advice(month, params, proposal.allocations)
    parts = split_instance(month)
    # The truth: each part solved as exactly as a bench can afford (no tolerance), before and after.
    exact = replace(params, gap_tolerance=0.0, time_limit_s=20.0)
    checked = []
    for place in advice.top(places).to_dict("records"):
        part = next(p for p in parts if place["resource_id"] in set(p.resources["resource_id"]))
        before = solve(part, exact)
        more = part.resources.copy()
        more.loc[more["resource_id"] == place["resource_id"], "capacity"] += place["holds_for_units"]
        after = solve(replace(part, resources=more), exact)
        gained = after.objective - before.objective
        checked.append({"resource_id": place["resource_id"], "shadow_price": place["shadow_price"],
                        "units": int(place["holds_for_units"]), "idle_units": int(place["idle_units"]),
                        "predicted": place["expected_gain"], "lp_predicted": place["value_over_range"],
                        "gained": gained, "part_requests": len(part.requests), "gap_before": before.gap,
                        "gap_after": after.gap,
                        "error": abs(gained - place["expected_gain"]) / max(place["expected_gain"], 1e-9)})
        print(checked[-1], flush=True)
    predicted = sum(c["predicted"] for c in checked)
    gained = sum(c["gained"] for c in checked)
    return {"requests": requests, "resources": resources, "solve_seconds": round(solve_seconds, 1),
            "advice_seconds": round(advice.seconds, 2), "priced_resources": int((advice.resources["shadow_price"] > 0).sum()),
            "places": checked, "predicted_total": predicted, "gained_total": gained,
            "total_error": abs(gained - predicted) / max(predicted, 1e-9)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    month_options(parser, requests=20_000, resources=1_000, time_limit=30.0, seed=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    params = SolverParams(time_limit_s=args.time_limit, seed=7)
    report = {"demo_top": demo_top(params)}
    print(report, flush=True)
    report["scale"] = truth(args.requests, args.resources, params)
    print(json.dumps(report["scale"], default=str)[:2000])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
