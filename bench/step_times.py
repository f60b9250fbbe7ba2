"""Where a monthly run's steps spend their time in a warm run worker, without any server (issue 26 item 5).

    python -m bench.step_times [--runs 3] [--profile FILE.pstats] [--json FILE] [--home DIR]

One throw-away home with the demo month (2,000 requests, 120 resources, seed 7, `batch-admin demo-data`).
This process then does what a warm run worker does: it imports engine.worker_preload (the code location
and the warm-up the workers' forkserver runs once), and executes the execute job of the month in process
`--runs` times, each with a new run ticket of alice's (the demo key), as the in-process executor does in a
worker (each run in a child forked from this process, as the forkserver forks a worker per run). Per run: the wall and CPU time (user + sys of this process) from the run's start to its end, and each
step's seconds from the run's step stats (Dagster's STEP_START to STEP_SUCCESS), the event log storage's class. `--profile` writes a
cProfile of the last run (read it with `python -m pstats`). Prints one JSON object with every run and the
median seconds per step.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.cli import DEMO_MONTH, DEMO_REQUESTS, DEMO_RESOURCES, DEMO_SEED, emit_json

BIN = Path(sys.executable).parent
ACTOR = "alice"


def make_home(home: Path) -> None:
    """The demo month landed in `home`; this process's settings point at it."""
    os.environ["BATCH_ADMIN_HOME"] = str(home)
    subprocess.run([str(BIN / "batch-admin"), "demo-data", DEMO_MONTH, "--requests", str(DEMO_REQUESTS),
                    "--resources", str(DEMO_RESOURCES), "--seed", str(DEMO_SEED)],
                   check=True, capture_output=True)


def forked(run: Any, out: Path) -> dict[str, Any]:
    """`run()` in a child forked from this process, as the warm workers' forkserver forks one worker per run:
    what a run leaves in its process (kept LP prices, the landing read last) does not reach the next run."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            out.write_text(json.dumps(run()))
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise SystemExit(f"the run's process failed (status {status})")
    return json.loads(out.read_text())


def one_run(profile: cProfile.Profile | None, profile_path: Path | None = None) -> dict[str, Any]:
    """Execute the month's execute job in this process; its wall, CPU and per-step seconds."""
    import dagster as dg

    from batch.identity import DEMO_KEYS_DIR, TICKET_TAG, load_private_key, make_ticket
    from batch.lifecycle import EXECUTE_JOB
    from batch.roles import ACTOR_TAG, NOTE_TAG
    from batch_cli.instance import prepare
    from pipelines.definitions import defs

    prepare()
    key = load_private_key(ACTOR, str(DEMO_KEYS_DIR / f"{ACTOR}.key"))
    tags = {TICKET_TAG: make_ticket(key, ACTOR, EXECUTE_JOB, [DEMO_MONTH], 15).encode(), ACTOR_TAG: ACTOR,
            NOTE_TAG: "bench.step_times"}  # from version 2 on a run needs a change note
    job = defs.resolve_job_def(EXECUTE_JOB)
    with dg.DagsterInstance.get() as instance:
        cpu, wall = time.process_time(), time.perf_counter()
        if profile:
            profile.enable()
        result = job.execute_in_process(instance=instance, partition_key=DEMO_MONTH, tags=tags, raise_on_error=True)
        if profile:
            profile.disable()
            profile.dump_stats(str(profile_path))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        steps = {stat.step_key: round(stat.end_time - stat.start_time, 3)
                 for stat in instance.get_run_step_stats(result.run_id) if stat.end_time and stat.start_time}
        events = len(instance.all_logs(result.run_id))
        storage = type(instance.event_log_storage).__name__
    return {"run_id": result.run_id, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "events": events,
            "event_log_storage": storage,
            "steps_s": steps, "steps_total_s": round(sum(steps.values()), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the last run here")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--home", type=Path, help="make the home here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_step_times_") as folder:
        make_home(args.home or Path(folder) / "home")
        started = time.perf_counter()
        import engine.worker_preload  # noqa: F401  (what the warm workers' forkserver does once)

        preload_s = time.perf_counter() - started
        runs = []
        for index in range(args.runs):
            profile = cProfile.Profile() if args.profile and index == args.runs - 1 else None
            runs.append(forked(functools.partial(one_run, profile, args.profile), Path(folder) / f"run_{index}.json"))
    steps = sorted({step for run in runs for step in run["steps_s"]})
    emit_json({"load_average": os.getloadavg(), "preload_s": round(preload_s, 2), "runs": runs,
               "median_step_s": {step: statistics.median(run["steps_s"].get(step, 0.0) for run in runs)
                                 for step in steps},
               "median_wall_s": statistics.median(run["wall_s"] for run in runs),
               "median_cpu_s": statistics.median(run["cpu_s"] for run in runs)}, args.json)


if __name__ == "__main__":
    main()
