"""What the admin waits for at the command line: `batch-admin run`, `plan` and `approve` of the demo month,
without any server and while `batch-admin ui` runs beside them (issue 26 item 5).

    python -m bench.cli_runs [--repeats 3] [--without-ui-file | --no-server-only] [--commands plan,approve] [--json FILE]

One throw-away home with the demo month (2,000 requests, 120 resources, seed 7). Each round: `plan`, `run`
(a new version), a finalize request approved (`approve`, the finalize job) and an unlock request approved
(`approve`, the unlock job). First `--repeats` rounds without a server, then `batch-admin ui` is started
and, after one round of warm-up (its daemon's first launch waits for the warm run workers), as many again.
--without-ui-file removes the ui's ui.json once it is up: the CLI then takes its own path beside a running
ui, which is the code before runs went to the ui's webserver (the "before" of docs/performance.md).

Prints one JSON object: every command's wall seconds and CPU seconds (user + sys of the command and of the
children it waited for: its run worker when the command saw it exit), with the ui running the CPU seconds its
processes spent meanwhile (ui_cpu_s: webserver, daemon, code server, the run workers they reaped), for a run its solve seconds (the
version's metrics) and overhead (wall minus solve), the one-minute load average before each command, where the command's
seconds went (from its start: its run created, queued, launched by the daemon, its run worker's process
started, the run started in it, its run ended in the event log, the command's exit), and per command and setting the median wall (and the median overhead of runs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import dagster as dg

from bench.cli import DEMO_MONTH, DEMO_REQUESTS, DEMO_RESOURCES, DEMO_SEED, emit_json

BIN = Path(sys.executable).parent
READY_TIMEOUT_S = 240
ADMIN, APPROVER = "alice", "bob"


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([str(BIN / "batch-admin"), *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"batch-admin {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done


def timeline(env: dict[str, str], run_id: str, since: float) -> dict[str, float]:
    """Seconds from `since` (the command's start, epoch) to its run's creation, its queuing (RUN_ENQUEUED), the
    daemon's launch (RUN_STARTING), its run worker's process (the launcher's "Started process" event), the
    worker's start of the run (RUN_START) and its end (RUN_SUCCESS or RUN_FAILURE)."""
    names = {dg.DagsterEventType.RUN_ENQUEUED: "run enqueued", dg.DagsterEventType.RUN_STARTING: "run starting",
             dg.DagsterEventType.RUN_START: "run worker started", dg.DagsterEventType.RUN_SUCCESS: "run ended",
             dg.DagsterEventType.RUN_FAILURE: "run ended"}
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as the_instance:
        record = the_instance.get_run_record_by_id(run_id)
        assert record is not None
        marks = {"run created": record.create_timestamp.timestamp() - since}
        for event in the_instance.get_records_for_run(run_id, of_type={*names, dg.DagsterEventType.ENGINE_EVENT}).records:
            entry = event.event_log_entry
            kind = entry.dagster_event_type
            if kind == dg.DagsterEventType.ENGINE_EVENT:
                if entry.message.startswith("Started process"):
                    marks.setdefault("worker process", entry.timestamp - since)
            elif kind is not None:
                marks.setdefault(names[kind], entry.timestamp - since)
        return {name: round(at, 2) for name, at in marks.items()}


def session_cpu(session: int | None) -> float:
    """CPU seconds (user + sys) of the processes of a session (the ui's: its webserver, daemon, code server,
    warm workers' server), with the children they reaped (the run workers); 0 without a session or /proc."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if session is not None and int(fields[3]) == session:
            total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


# The session of the running ui (its pid: started in a session of its own), None without one.
UI_SESSION: list[int] = []


def timed(env: dict[str, str], record: list[dict[str, Any]], setting: str, what: str, *args: str) -> dict:
    load = os.getloadavg()[0]
    since = time.time()
    session = UI_SESSION[0] if UI_SESSION else None
    server_before = session_cpu(session)
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = cli(env, *args, "--json")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    answer = json.loads(done.stdout)
    entry: dict[str, Any] = {"setting": setting, "command": what, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                             "load": round(load, 2)}
    if session is not None:
        entry["ui_cpu_s"] = round(session_cpu(session) - server_before, 2)
    if answer.get("run_id"):
        entry["timeline"] = {**timeline(env, answer["run_id"], since), "command ended": round(wall, 2)}
    if what == "run":
        solve = float((answer.get("metrics") or {}).get("solve_seconds") or 0.0)
        entry.update(solve_s=round(solve, 2), overhead_s=round(wall - solve, 2), version=answer.get("version"))
    record.append(entry)
    return answer


COMMANDS = ("plan", "run", "approve")


def one_round(env: dict[str, str], record: list[dict[str, Any]], setting: str, note: str,
              commands: tuple[str, ...] = COMMANDS) -> None:
    """One round of the commands asked for (an approval needs a version: without `run`, each round's approvals
    finalize the month's latest version, run once untimed when the home has none)."""
    month = DEMO_MONTH
    if "plan" in commands:
        timed(env, record, setting, "plan", "plan", month, "--actor", ADMIN)
    if "run" in commands:
        version = timed(env, record, setting, "run", "run", month, "--actor", ADMIN, "--note", note)["version"]
    elif "approve" in commands:
        latest = json.loads(cli(env, "status", month, "--json").stdout)["versions"]
        version = latest[-1]["version"] if latest else json.loads(
            cli(env, "run", month, "--actor", ADMIN, "--note", note, "--json").stdout)["version"]
    if "approve" not in commands:
        return
    filed = json.loads(cli(env, "finalize", month, "--version", str(version), "--actor", ADMIN,
                           "--note", note, "--json").stdout)
    timed(env, record, setting, "approve finalize", "approve", filed["id"], "--actor", APPROVER)
    filed = json.loads(cli(env, "unlock", month, "--actor", ADMIN, "--reason", note, "--json").stdout)
    timed(env, record, setting, "approve unlock", "approve", filed["id"], "--actor", APPROVER)


def start_ui(env: dict[str, str], home: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (home / "ui.log").open("wb")
    ui = subprocess.Popen([str(BIN / "batch-admin"), "ui", "--port", str(port)], env=env, start_new_session=True,
                          stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port + 1}/server_info", timeout=2)
            if (Path(env["DAGSTER_HOME"]) / "ui.json").exists():
                return ui, port
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit(f"batch-admin ui did not answer within {READY_TIMEOUT_S} s (see {home / 'ui.log'})")


def summary(record: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for entry in record:
        if entry["setting"] == "ui warm-up":
            continue
        key = f"{entry['setting']}: {entry['command']}"
        out.setdefault(key, {"walls": []})["walls"].append(entry["wall_s"])  # type: ignore[attr-defined]
        if "overhead_s" in entry:
            out[key].setdefault("overheads", []).append(entry["overhead_s"])  # type: ignore[attr-defined]
    for figures in out.values():
        figures["median_wall_s"] = round(statistics.median(figures["walls"]), 2)  # type: ignore[arg-type]
        if "overheads" in figures:
            figures["median_overhead_s"] = round(statistics.median(figures["overheads"]), 2)  # type: ignore[arg-type]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--without-ui-file", action="store_true",
                        help="remove the ui's ui.json: the CLI's own path beside a running ui (the code before)")
    parser.add_argument("--skip-no-server", action="store_true", help="measure only with the ui running")
    parser.add_argument("--no-server-only", action="store_true", help="measure only without a server (no ui started)")
    parser.add_argument("--commands", default=",".join(COMMANDS),
                        help=f"which of {','.join(COMMANDS)} each round times (comma-separated; default all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    commands = tuple(name.strip() for name in args.commands.split(",") if name.strip())
    if not commands or set(commands) - set(COMMANDS):
        parser.error(f"--commands takes some of {','.join(COMMANDS)}")
    home = Path(tempfile.mkdtemp(prefix="bench_cli_runs_"))
    env = {**os.environ, "BATCH_ADMIN_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), "COLUMNS": "200"}
    for name in ("BATCH_ADMIN_POSTGRES_URL", "BATCH_ADMIN_CONTROL_URL", "BATCH_ADMIN_IO_BASE"):
        env.pop(name, None)
    cli(env, "demo-data", DEMO_MONTH, "--requests", str(DEMO_REQUESTS), "--resources", str(DEMO_RESOURCES),
        "--seed", str(DEMO_SEED))
    record: list[dict[str, Any]] = []
    rounds = 0
    if not args.skip_no_server:
        for _ in range(args.repeats):
            rounds += 1
            one_round(env, record, "no server", f"round {rounds}", commands)
    if args.no_server_only:
        emit_json({"home": str(home), "commands": record, "summary": summary(record)}, args.json)
        return
    ui, _ = start_ui(env, home)
    UI_SESSION.append(ui.pid)
    setting = "ui, CLI's own path" if args.without_ui_file else "ui running"
    try:
        if args.without_ui_file:
            (home / "dagster" / "ui.json").unlink()
        rounds += 1
        one_round(env, record, "ui warm-up", f"round {rounds}", commands)
        for _ in range(args.repeats):
            rounds += 1
            one_round(env, record, setting, f"round {rounds}", commands)
    finally:
        os.killpg(ui.pid, 2)
        ui.wait(timeout=60)
    emit_json({"home": str(home), "commands": record, "summary": summary(record)}, args.json)


if __name__ == "__main__":
    main()
