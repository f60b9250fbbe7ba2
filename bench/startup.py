"""Start-up of the CLI: wall and CPU time of `batch-admin --help`, `status MONTH` and `status`, run as a person runs
them (a fresh process each), on a home made beforehand (docs/performance.md, CLI start-up).

    python -m bench.startup --home H --month 2026-12 --cli .venv/bin/batch-admin --cli /other/.venv/bin/batch-admin

Several --cli executables are measured in turn, one run of each after the other, so that a change of the
machine's load falls on all of them alike; each command is run once first to warm the file cache. Reports the
median and range of wall and CPU (user + sys of the child) seconds, and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.cli import emit_json


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of `argv`; RuntimeError when it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.decode()[-500:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def measure(clis: list[str], commands: list[list[str]], home: Path, runs: int) -> dict[str, Any]:
    env = {**os.environ, "BATCH_ADMIN_HOME": str(home)}
    found: dict[str, dict[str, dict[str, list[float]]]] = {
        cli: {" ".join(c): {"wall": [], "cpu": []} for c in commands} for cli in clis}
    load_before = os.getloadavg()
    for command in commands:
        for cli in clis:
            timed([cli, *command], env)  # warm-up
        for _ in range(runs):
            for cli in clis:
                wall, cpu = timed([cli, *command], env)
                found[cli][" ".join(command)]["wall"].append(wall)
                found[cli][" ".join(command)]["cpu"].append(cpu)
    return {
        "home": str(home), "runs": runs, "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "results": {cli: {name: {kind: summary(values) for kind, values in times.items()}
                          for name, times in by_command.items()} for cli, by_command in found.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="a home with the month landed and run")
    parser.add_argument("--month", required=True)
    parser.add_argument("--cli", action="append", required=True, help="a batch-admin executable; repeat to compare")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    commands = [["--help"], ["status", args.month], ["status"]]
    emit_json(measure(args.cli, commands, args.home.resolve(), args.runs), args.out)


if __name__ == "__main__":
    main()
