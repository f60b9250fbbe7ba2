"""Wall time of one month run by the multiprocess executor and by Celery workers, on this machine.

    python -m bench.celery --requests 100000 --resources 5000 --time-limit 60 --workers 2 \\
        --json bench/results/celery.json

Needs the PostgreSQL server (--postgres, a maintenance database URL) and RabbitMQ with rabbitmqctl.
Makes a throw-away database and vhost, lands the same demo month twice (two month keys), runs
one on the multiprocess executor and the other on the Celery executor with N `batch-admin worker`
processes (each its own process group, stopped afterwards), and prints both wall times and their
ratio. Both runs share the instance, the parameters (seed, time limit, parts) and the solver
pool's size (N: as many solves at a time on both executors).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import dagster as dg
import psycopg2

from bench.cli import emit_json
from resources.settings import psycopg2_url

BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parent.parent
WORKER_READY_S = 60
RUN_TIMEOUT_S = 3600


def _database(admin_url: str) -> str:
    name = f"bench_celery_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(admin_url, connect_timeout=5)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return name


def _drop(admin_url: str, name: str) -> None:
    admin = psycopg2.connect(admin_url, connect_timeout=5)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def _cli(env: dict[str, str], *args: str) -> float:
    """Run one batch-admin command; its wall time in seconds."""
    start = time.perf_counter()
    done = subprocess.run([str(BIN / "batch-admin"), *args], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise SystemExit(f"batch-admin {' '.join(args)} failed: {done.stderr.strip()}")
    return time.perf_counter() - start


def _start_worker(env: dict[str, str], folder: Path, name: str) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(BIN / "batch-admin"), "worker", "--concurrency", "1"], env=env, cwd=folder,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + WORKER_READY_S
    while " ready." not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"worker {name} did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.3)
    return proc


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _run_seconds(dagster_home: Path) -> float:
    """The latest run's own duration, from its start to its end in the instance."""
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        run = instance.get_runs(limit=1)[0]
        stats = instance.get_run_stats(run.run_id)
        if stats.start_time is None or stats.end_time is None:
            raise SystemExit(f"run {run.run_id} has no start or end time")
        return stats.end_time - stats.start_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # One month per executor, the same demo data (seed) in each: a second run of one month would
    # start from the first's allocation (stability) and finish sooner for that reason alone.
    parser.add_argument("--months", default="2026-06,2026-09", help="multiprocess month,celery month")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--resources", type=int, default=5_000)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--max-parts", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--postgres", default=os.environ.get("BATCH_ADMIN_TEST_POSTGRES",
                                                              "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--rabbitmq", default="127.0.0.1:5672")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    database = _database(args.postgres)
    vhost = f"bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True, timeout=60)
    workers: list[subprocess.Popen] = []
    try:
        subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True,
                       capture_output=True, timeout=60)
        with tempfile.TemporaryDirectory(prefix="bench_celery_") as scratch:
            home = Path(scratch) / "home"
            base = {k: v for k, v in os.environ.items() if not k.startswith(("BATCH_ADMIN_", "DAGSTER_"))}
            multiprocess = {**base, "BATCH_ADMIN_HOME": str(home),
                            "BATCH_ADMIN_POSTGRES_URL": f"{args.postgres.rsplit('/', 1)[0]}/{database}"}
            celery = {**multiprocess, "BATCH_ADMIN_EXECUTOR": "celery",
                      "BATCH_ADMIN_CELERY_BROKER": f"pyamqp://guest@{args.rabbitmq}/{vhost}"}
            # The instance's dagster.yaml names this variable; psycopg2 is the driver installed.
            os.environ["BATCH_ADMIN_POSTGRES_URL"] = psycopg2_url(multiprocess["BATCH_ADMIN_POSTGRES_URL"])
            _cli(multiprocess, "migrate")
            # Solves may run side by side, as many as the workers (the pool is the instance's, on every executor).
            subprocess.run([str(BIN / "dagster"), "instance", "concurrency", "set", "solver", str(args.workers)],
                           env={**os.environ, "DAGSTER_HOME": str(home / "dagster")},
                           check=True, capture_output=True, timeout=120)
            months = args.months.split(",")
            for month in months:
                _cli(multiprocess, "demo-data", month, "--requests", str(args.requests), "--resources",
                     str(args.resources), "--seed", "7")
                _cli(multiprocess, "params", month, "--actor", "alice", "--set", f"time_limit_s={args.time_limit:g}",
                     "--set", f"max_parts={args.max_parts}", "--set", "seed=1")
            figures: dict[str, dict[str, float]] = {}
            wall = _cli(multiprocess, "run", months[0], "--actor", "alice")
            figures["multiprocess"] = {"cli_wall_s": round(wall, 1),
                                       "run_s": round(_run_seconds(home / "dagster"), 1)}
            workers = [_start_worker(celery, Path(scratch) / f"worker{i}", f"worker{i}") for i in range(args.workers)]
            wall = _cli(celery, "run", months[1], "--actor", "alice")
            figures["celery"] = {"cli_wall_s": round(wall, 1), "run_s": round(_run_seconds(home / "dagster"), 1),
                                 "workers": args.workers}
    finally:
        _stop(workers)
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], check=False, capture_output=True, timeout=60)
        _drop(args.postgres, database)
    result = {"months": args.months, "requests": args.requests, "resources": args.resources,
              "time_limit_s": args.time_limit, "max_parts": args.max_parts, "cpu_count": os.cpu_count(),
              "load_average_1m": round(os.getloadavg()[0], 2), **figures,
              "celery_over_multiprocess": round(figures["celery"]["run_s"] / figures["multiprocess"]["run_s"], 2)}
    emit_json(result, args.json)


if __name__ == "__main__":
    main()
