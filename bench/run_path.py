"""One month run the ways admins run it, on the same instance, each beside the solve time it contains:
`batch-admin run` without a daemon; launches from the Dagster UI (GraphQL, served by `dagster dev`):
the first after the UI started and later ones (warm run workers); `batch-admin run` while the UI's
daemon serves the queue.

    python -m bench.run_path [--requests 2000 --resources 120 --time-limit 30 --warm-runs 3] [--json FILE]

Prints one JSON object: wall seconds of each run (submission to success, polled every 0.1 s), its
solve seconds (the version's metrics), the overhead (wall minus solve), its timeline (seconds from
the run's creation to its start, each step's duration, its end), the later UI run of median overhead
and the ratio UI / CLI (that run's wall over the CLI run's). --postgres measures a PostgreSQL
deployment (a throw-away database) instead of the embedded default.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import dagster as dg

from batch.months import planned_months
from bench.cli import emit_json
from bench.connections import graphql, throwaway_deployment
from resources.control_store import ControlStore
from resources.settings import Settings, psycopg2_url

BIN = Path(sys.executable).parent
LAUNCH = """
mutation Launch($month: String!, $ticket: String!) {
  launchRun(executionParams: {
    selector: {repositoryLocationName: "monthly_batch_admin", repositoryName: "__repository__", jobName: "execute_job"},
    executionMetadata: {tags: [{key: "dagster/partition", value: $month}, {key: "batch_admin/month", value: $month},
                               {key: "batch_admin/ticket", value: $ticket}]}
  }) { __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } }
}"""
STATUS = 'query Status($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }'


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "batch-admin"), *args], env=env, check=True, capture_output=True, text=True)


def solve_seconds(env: dict[str, str], month: str) -> float:
    store = ControlStore(Settings.from_env(env).control_url)
    try:
        return float(store.versions(month)[-1]["metrics"].get("solve_seconds") or 0.0)
    finally:
        store.dispose()


def timeline(env: dict[str, str], month: str) -> dict[str, float]:
    """Seconds from the month's run's creation to each of its milestones: the run worker's start,
    every step's end, the run's end (read from the Dagster event log)."""
    with dg.DagsterInstance.from_config(str(Settings.from_env(env).dagster_home)) as the_instance:
        run = the_instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": month}), limit=1)[0]
        records = the_instance.get_records_for_run(run.run_id, limit=10_000).records
        start = the_instance.get_run_record_by_id(run.run_id).create_timestamp.timestamp()
        marks: dict[str, float] = {}
        step_started: dict[str, float] = {}
        for record in records:
            event = record.event_log_entry.dagster_event
            if event is None:
                continue
            at = record.event_log_entry.timestamp
            kind = event.event_type
            if kind in (dg.DagsterEventType.RUN_START, dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE):
                marks[kind.value.lower()] = round(at - start, 2)
            elif kind == dg.DagsterEventType.STEP_START:
                step_started[event.step_key] = at
            elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                marks[f"step {event.step_key}"] = round(at - step_started.get(event.step_key, at), 2)
        return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--resources", type=int, default=120)
    parser.add_argument("--time-limit", type=float, default=30.0)
    parser.add_argument("--warm-runs", type=int, default=3, help="later UI launches to measure")
    parser.add_argument("--postgres", metavar="ADMIN_URL",
                        help="measure a PostgreSQL deployment: a throw-away database on this server (dropped after)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.postgres:
        with throwaway_deployment(args.postgres) as env:
            # This process's instance (timelines): its dagster.yaml names the variable; the driver is psycopg2.
            os.environ["BATCH_ADMIN_POSTGRES_URL"] = psycopg2_url(env["BATCH_ADMIN_POSTGRES_URL"])
            cli(env, "migrate")
            result = measure(env, args)
    else:
        env = {**os.environ, "BATCH_ADMIN_HOME": tempfile.mkdtemp(prefix="bench_run_path_")}
        for name in ("BATCH_ADMIN_POSTGRES_URL", "BATCH_ADMIN_CONTROL_URL", "BATCH_ADMIN_IO_BASE", "DAGSTER_HOME"):
            env.pop(name, None)
        result = measure(env, args)
    emit_json({"instance": "postgres" if args.postgres else "sqlite", **result}, args.json)


def measure(env: dict[str, str], args: argparse.Namespace) -> dict:
    """The runs of the module's docstring on the deployment of env."""
    # One month per measured run: a CLI run without a daemon; with the UI (and its daemon) up, its first
    # UI launch (the daemon's warm server may still be importing), later ones, and a CLI run it serves.
    months = planned_months()[-(3 + args.warm_runs):]
    cli_month, ui_first_month, *ui_months, cli_daemon_month = months
    for month in months:
        cli(env, "demo-data", month, "--requests", str(args.requests), "--resources", str(args.resources), "--seed", "7")
        cli(env, "params", month, "--actor", "alice", "--set", f"time_limit_s={args.time_limit}")

    walls: dict[str, float] = {}
    started = time.perf_counter()
    cli(env, "run", cli_month, "--actor", "alice")
    walls[cli_month] = time.perf_counter() - started

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ui = subprocess.Popen([str(BIN / "batch-admin"), "ui", "--port", str(port)], env=env, start_new_session=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    statuses = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(1)
        for month in (ui_first_month, *ui_months):
            ticket = json.loads(cli(env, "ticket", month, "--job", "execute_job", "--actor", "alice", "--json").stdout)
            started = time.perf_counter()
            run_id = graphql(port, LAUNCH, {"month": month, "ticket": ticket["value"]}, timeout=60)["launchRun"]["run"]["runId"]
            status = ""
            while status not in ("SUCCESS", "FAILURE", "CANCELED") and time.perf_counter() - started < 900:
                time.sleep(0.1)
                status = graphql(port, STATUS, {"id": run_id}, timeout=60)["runOrError"]["status"]
            walls[month] = time.perf_counter() - started
            statuses.append(status)
        started = time.perf_counter()
        cli(env, "run", cli_daemon_month, "--actor", "alice")
        walls[cli_daemon_month] = time.perf_counter() - started
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=60)

    def measured(month: str) -> dict[str, float]:
        solve = solve_seconds(env, month)
        return {"wall_s": round(walls[month], 1), "solve_s": round(solve, 1),
                "overhead_s": round(walls[month] - solve, 1), "timeline": timeline(env, month)}

    warm = [measured(month) for month in ui_months]
    by_overhead = sorted(range(len(warm)), key=lambda i: warm[i]["overhead_s"])
    median = by_overhead[(len(by_overhead) - 1) // 2] if warm else 0  # the run of the lower median overhead
    return {
        "requests": args.requests, "resources": args.resources, "time_limit_s": args.time_limit,
        "load_average_1m": os.getloadavg()[0], "ui_statuses": statuses,
        "cli": measured(cli_month), "ui_first_run": measured(ui_first_month),
        "ui": warm[median] if warm else None, "ui_warm_runs": warm,
        "cli_with_daemon": measured(cli_daemon_month),
        "ui_over_cli": round(warm[median]["wall_s"] / walls[cli_month], 2) if warm else None,
    }

if __name__ == "__main__":
    main()
