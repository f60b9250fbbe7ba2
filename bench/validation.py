"""What the validated_inputs step's great-expectations validation costs in a warm run worker (issue 26 item 5).

    python -m bench.validation [--requests 2000] [--resources 120] [--seed 7] [--repeats 5] [--no-docs]

Generates a month (default the demo month, 2,000 x 120, seed 7) into a throw-away landing, loads it, then
does what the warm workers' forkserver does once (imports engine.worker_preload: the code location and its
warm-up, which validates a small month with Data Docs) and validates the month `--repeats` times:
- `forked`: each in a child forked from this process, as a run worker is forked per run (what one
  validation leaves in its process does not reach the next): the child's CPU (user + sys) and wall;
- `in_process`: one after the other in this process (a process that validates many months).
Each with Data Docs into a new folder unless --no-docs. Prints one JSON object with the medians.
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

from bench.cli import DEMO_MONTH, DEMO_REQUESTS, DEMO_RESOURCES, DEMO_SEED, emit_json
from bench.step_times import forked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=DEMO_REQUESTS)
    parser.add_argument("--resources", type=int, default=DEMO_RESOURCES)
    parser.add_argument("--seed", type=int, default=DEMO_SEED)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from batch.demo_data import generate_month, write_landing
    from batch.inputs import load_landing

    with tempfile.TemporaryDirectory(prefix="bench_validation_") as folder:
        home = Path(folder)
        write_landing(home, DEMO_MONTH, generate_month(DEMO_MONTH, requests=args.requests,
                                                       resources=args.resources, seed=args.seed))
        tables = load_landing(home, DEMO_MONTH)
        import engine.worker_preload  # noqa: F401  (what the warm workers' forkserver does once)
        from checks.expectations import validate_inputs

        def once(index: int) -> dict[str, Any]:
            cpu, wall = time.process_time(), time.perf_counter()
            report = validate_inputs(tables, data_docs_dir=None if args.no_docs else home / "docs" / str(index))
            return {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall,
                    "checked_rules": report.checked_rules, "success": report.success}

        forks = [forked(lambda i=index: once(i), home / f"fork_{index}.json") for index in range(args.repeats)]
        in_process = [once(args.repeats + index) for index in range(args.repeats)]
    result = {"load_average": [round(load, 2) for load in os.getloadavg()], "requests": args.requests,
              "resources": args.resources, "docs": not args.no_docs, "checked_rules": forks[0]["checked_rules"],
              "success": forks[0]["success"]}
    for name, runs in (("forked", forks), ("in_process", in_process)):
        result[name] = {"median_cpu_s": round(statistics.median(run["cpu_s"] for run in runs), 3),
                        "median_wall_s": round(statistics.median(run["wall_s"] for run in runs), 3),
                        "cpu_s": [round(run["cpu_s"], 3) for run in runs]}
    emit_json(json.loads(json.dumps(result)), args.json)


if __name__ == "__main__":
    main()
