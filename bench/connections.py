"""PostgreSQL connections of a deployment while months run: one `batch-admin run`, N runs of N months at
once, and a backfill of N months launched in the Dagster UI; pg_stat_activity sampled every 0.2 s.

    python -m bench.connections [--runs 3] [--requests 300 --resources 30 --time-limit 2] [--no-backfill] \\
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres] [--json FILE]

Makes a throw-away database on the server of --postgres (dropped afterwards) and a temporary
BATCH_ADMIN_HOME, runs `batch-admin migrate` and lands 2N + 1 demo months. Then, each phase sampled on
its own: one month run alone; N other months run at once (each `batch-admin run` its own process; no
daemon runs, so each CLI launches its run itself); a few seconds after they ended; `batch-admin ui`
(`dagster dev`: webserver, daemon, their code servers) idle, then a backfill of N more months launched
through its GraphQL API with a run ticket, executed by the daemon's run queue.

Prints one JSON object; per phase: the peak of connections to the database at once, the peak by kind of
client process and the most one process held (clients on this host, traced through /proc: a connection
that closed before it was traced counts as "gone"), the distinct connections seen (a lower bound of
those opened: one living under 0.2 s can be missed) and the wall seconds. docs/deploy.md reports the
figures; tests/resources/test_connections_postgres.py checks them against the budget there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2

from batch.identity import KEY_VAR, generate_key, write_private_key
from batch.months import planned_months
from bench.cli import emit_json

BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 1800
UI_READY_S = 300
SAMPLE_EVERY_S = 0.2
# What a client process of the deployment is, by its command line (the first match wins).
KINDS = (("dagster api grpc", "code_server"), ("spawn_main", "run_worker"), ("forkserver", "step"),
         ("dagster._daemon", "daemon"), ("dagster-daemon", "daemon"), ("dagster_webserver", "webserver"),
         ("dagster-webserver", "webserver"), ("dagster dev", "dagster_dev"), ("batch-admin", "cli"))
UNTRACED = ("gone", "unix_socket")

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on Error { message }
  }
}"""
BACKFILL_RUNS = """
query BackfillRuns($id: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}"""
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
# How long the server may take to end the sessions of processes that exited (settle_closed_sessions).
SETTLE_S = 30.0


class ConnectionSampler:
    """Connections to one database, sampled every `every` seconds from the server's maintenance database
    (the sampler's own connection is not counted): the peak at once, every backend seen, and, where the
    client runs on this host, which process holds each."""

    def __init__(self, url: str, every: float = SAMPLE_EVERY_S):
        self.server, self.database = url.rsplit("/", 1)
        self.every, self.peak, self.samples = every, 0, 0
        self.clients: dict[tuple[int, str], tuple[int, str]] = {}  # backend (pid, start) -> (client pid, kind)
        self.peak_by_kind: dict[str, int] = {}
        self.peak_one_process = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._error: BaseException | None = None

    def _sample(self) -> None:
        try:
            # Not `with psycopg2.connect(...)`: that opens a transaction, in which pg_stat_activity stays the
            # snapshot of its first read. In autocommit every query sees the server as it is.
            conn = psycopg2.connect(f"{self.server}/postgres", connect_timeout=5)
            conn.autocommit = True
            try:
                with conn.cursor() as cur:
                    while True:
                        cur.execute("SELECT pid, backend_start::text, client_port FROM pg_stat_activity "
                                    "WHERE datname = %s", (self.database,))
                        self._count(cur.fetchall())
                        if self._stop.wait(self.every):
                            return
            finally:
                conn.close()
        except BaseException as exc:  # reported by __exit__
            self._error = exc

    def _count(self, rows: list[tuple[int, str, int | None]]) -> None:
        self.peak, self.samples = max(self.peak, len(rows)), self.samples + 1
        kinds: dict[str, int] = {}
        processes: dict[int, int] = {}
        for pid, start, port in rows:
            client = self.clients.get((pid, start)) or self.clients.setdefault((pid, start), client_process(port))
            kinds[client[1]] = kinds.get(client[1], 0) + 1
            if client[1] not in UNTRACED:
                processes[client[0]] = processes.get(client[0], 0) + 1
        for kind, count in kinds.items():
            self.peak_by_kind[kind] = max(self.peak_by_kind.get(kind, 0), count)
        self.peak_one_process = max([self.peak_one_process, *processes.values()])

    def __enter__(self) -> ConnectionSampler:
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.wall_s = time.perf_counter() - self.started
        if self._error is not None:
            raise RuntimeError(f"sampling pg_stat_activity failed: {self._error}") from self._error

    def figures(self) -> dict:
        seen: dict[str, int] = {}
        for _, kind in self.clients.values():
            seen[kind] = seen.get(kind, 0) + 1
        return {"peak": self.peak, "peak_by_process_kind": dict(sorted(self.peak_by_kind.items())),
                "peak_one_process": self.peak_one_process, "distinct_seen": len(self.clients),
                "distinct_seen_by_process_kind": dict(sorted(seen.items())), "samples": self.samples,
                "wall_s": round(self.wall_s, 1)}


def settle_closed_sessions(url: str, home: Path, timeout_s: float = SETTLE_S) -> None:
    """Wait (at most timeout_s) until no process of `home` is alive but its code servers, and every session
    left belongs to a live code server: called once every run is over, when the only processes meant to
    outlive it are the code servers the CLIs started. A CLI may end before its run worker, and a run worker
    before its step processes; such a process still writes (Dagster's storages open a connection per
    write), so a moment with no session of it proves nothing: the process itself must be gone. A session
    whose client is gone is one the server lists a moment after its process closed it. A code server's
    sessions are not waited for, and any session that outlives the wait is sampled: those are what the
    sampling after the runs must see."""
    server, database = url.rsplit("/", 1)
    deadline = time.monotonic() + timeout_s
    while _home_processes(home.resolve(), but="dagster\0api\0grpc") and time.monotonic() < deadline:
        time.sleep(SAMPLE_EVERY_S)
    conn = psycopg2.connect(f"{server}/postgres", connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute("SELECT client_port FROM pg_stat_activity WHERE datname = %s", (database,))
                if all(client_process(port)[1] == "code_server" for (port,) in cur.fetchall()):
                    return
                time.sleep(SAMPLE_EVERY_S)
    finally:
        conn.close()


def client_process(port: int | None) -> tuple[int, str]:
    """(pid, kind) of the local process whose TCP socket has local port `port`; kind "gone" when it closed
    before it was traced (pid 0)."""
    if port is None or port < 0:
        return 0, "unix_socket"
    inode = _socket_inode(port)
    target = f"socket:[{inode}]"
    for proc in Path("/proc").iterdir() if inode else ():
        if not proc.name.isdigit():
            continue
        try:
            if not any(os.readlink(fd) == target for fd in (proc / "fd").iterdir()):
                continue
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        return int(proc.name), next((kind for words, kind in KINDS if words in cmdline), "other")
    return 0, "gone"


def _socket_inode(port: int) -> str | None:
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[1].endswith(wanted) and fields[9] != "0":
                return fields[9]
    return None


def deployment_env(postgres_url: str, home: Path) -> dict[str, str]:
    """The environment of a deployment on that database and home, acting as alice with a key made for
    it beside the home, in a roles file of its own (PostgreSQL never accepts the shipped demo keys)."""
    people = home.parent / "people"
    people.mkdir(parents=True, exist_ok=True)
    pem, public = generate_key()
    write_private_key(people / "alice.key", pem)
    (people / "roles.yaml").write_text(f"admins: [alice]\napprovers: []\nsystem: [scheduler]\n"
                                       f"keys:\n  alice: {public}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCH_ADMIN_", "DAGSTER_"))}
    env.update({"BATCH_ADMIN_HOME": str(home), "BATCH_ADMIN_POSTGRES_URL": postgres_url,
                "BATCH_ADMIN_ROLES": str(people / "roles.yaml"), KEY_VAR: str(people / "alice.key")})
    return env


@contextmanager
def throwaway_deployment(admin_url: str) -> Iterator[dict[str, str]]:
    """A fresh deployment: a new database on the server of admin_url and a temporary home, removed after."""
    name = f"bench_conn_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(admin_url, connect_timeout=5)
    admin.autocommit = True
    scratch = Path(tempfile.mkdtemp(prefix="bench_connections_"))
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield deployment_env(f"{admin_url.rsplit('/', 1)[0]}/{name}", scratch / "home")
    finally:
        stop_code_servers(scratch / "home")
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        shutil.rmtree(scratch, ignore_errors=True)


def stop_code_servers(home: Path, wait_s: float = 60.0) -> None:
    """The code servers the CLI starts end 45 s after its last heartbeat: wait for those of this home (one
    whose database and home vanish under it can linger), then stop those left."""
    deadline = time.monotonic() + wait_s
    while (left := _code_servers(home.resolve())) and time.monotonic() < deadline:
        time.sleep(1)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _code_servers(home: Path) -> list[int]:
    return _home_processes(home, only="dagster\0api\0grpc")


def _home_processes(home: Path, only: str = "", but: str = "") -> list[int]:
    """Pids of the processes whose environment names `home` as BATCH_ADMIN_HOME (what the CLI and every
    process it starts inherit), those whose command line holds `only`, or all but those holding `but`."""
    found, me = [], os.getpid()
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or int(proc.name) == me:
                continue
            cmdline = (proc / "cmdline").read_bytes()
            if (only and only.encode() not in cmdline) or (but and but.encode() in cmdline):
                continue
            if f"BATCH_ADMIN_HOME={home}\0".encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([str(BIN / "batch-admin"), *args], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"batch-admin {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def land(env: dict[str, str], months: list[str], requests: int, resources: int, time_limit: float) -> None:
    cli(env, "migrate")
    for month in months:
        cli(env, "demo-data", month, "--requests", str(requests), "--resources", str(resources), "--seed", "3")
        cli(env, "params", month, "--actor", "alice", "--set", f"time_limit_s={time_limit}")


def concurrent_runs(env: dict[str, str], months: list[str]) -> None:
    """`batch-admin run` of every month at once, each its own process; raises if one failed."""
    procs = [subprocess.Popen([str(BIN / "batch-admin"), "run", month, "--actor", "alice"], env=env, cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for month in months]
    failed = []
    for month, proc in zip(months, procs):
        _, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
        if proc.returncode != 0:
            failed.append(f"{month}: {stderr.strip()}")
    if failed:
        raise RuntimeError("concurrent runs failed: " + "; ".join(failed))


def measure_runs(env: dict[str, str], one: str, many: list[str]) -> dict:
    """One run of `one` alone, then runs of `many` at once, then a few idle seconds after them."""
    url = env["BATCH_ADMIN_POSTGRES_URL"]
    with ConnectionSampler(url) as idle:
        time.sleep(2)
    with ConnectionSampler(url) as alone:
        cli(env, "run", one, "--actor", "alice")
    with ConnectionSampler(url) as together:
        concurrent_runs(env, many)
    settle_closed_sessions(url, Path(env["BATCH_ADMIN_HOME"]))
    with ConnectionSampler(url) as after:
        time.sleep(3)
    return {"idle": idle.figures(), "one_run": alone.figures(),
            "concurrent_runs": {"runs": len(many), **together.figures()}, "after_runs": after.figures()}


def graphql(port: int, query: str, variables: dict, timeout: float = 120) -> dict:
    """The data of a GraphQL query to the Dagster webserver on `port`."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", method="POST",
                                     data=json.dumps({"query": query, "variables": variables}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)["data"]


def measure_backfill(env: dict[str, str], months: list[str]) -> dict:
    """`batch-admin ui` (webserver, daemon) idle for 10 s, then a backfill of `months` launched through
    its GraphQL API and run by the daemon's run queue; raises unless every month's run succeeded."""
    url = env["BATCH_ADMIN_POSTGRES_URL"]
    ticket = json.loads(cli(env, "ticket", *months, "--job", "execute_job", "--actor", "alice", "--json").stdout)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dagster_port = port + 1  # `batch-admin ui` serves the admin view on PORT and the Dagster UI on PORT + 1
    log = Path(env["BATCH_ADMIN_HOME"]) / "ui.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        ui = subprocess.Popen([str(BIN / "batch-admin"), "ui", "--port", str(port)], env=env, cwd=REPO_ROOT,
                              stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + UI_READY_S
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{dagster_port}/server_info", timeout=2)
                break
            except OSError:
                if ui.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"batch-admin ui did not start:\n{log.read_text(errors='replace')}") from None
                time.sleep(1)
        with ConnectionSampler(url) as idle:
            time.sleep(10)
        with ConnectionSampler(url) as backfill:
            launched = graphql(dagster_port, LAUNCH_BACKFILL, {"params": {
                "selector": {"partitionSetName": "execute_job_partition_set",
                             "repositorySelector": {"repositoryLocationName": "monthly_batch_admin",
                                                    "repositoryName": "__repository__"}},
                "partitionNames": months, "forceSynchronousSubmission": True,
                "tags": [{"key": ticket["tag"], "value": ticket["value"]},
                         {"key": "batch_admin/note", "value": "bench.connections backfill"}]}})
            launched = launched["launchPartitionBackfill"]
            if launched["__typename"] != "LaunchBackfillSuccess":
                raise RuntimeError(f"backfill not launched: {launched}")
            statuses: dict[str, str] = {}
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while time.monotonic() < deadline:
                runs = graphql(dagster_port, BACKFILL_RUNS, {"id": launched["backfillId"]})["runsOrError"]["results"]
                statuses = {next(t["value"] for t in run["tags"] if t["key"] == "dagster/partition"): run["status"]
                            for run in runs}
                if set(months) <= set(statuses) and set(statuses.values()) <= TERMINAL:
                    break
                time.sleep(2)
        if any(statuses.get(month) != "SUCCESS" for month in months):
            raise RuntimeError(f"backfill runs did not all succeed: {statuses}")
    finally:
        try:
            os.killpg(ui.pid, signal.SIGTERM)
            ui.wait(timeout=60)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait(timeout=30)
    return {"ui_idle": idle.figures(), "backfill": {"months": len(months), **backfill.figures()}}


def measure(admin_url: str, runs: int = 3, requests: int = 300, resources: int = 30, time_limit: float = 2.0,
            backfill: bool = True) -> dict:
    """Every phase's figures on a throw-away deployment."""
    months = planned_months()[-(2 * runs + 1):] if backfill else planned_months()[-(runs + 1):]
    result: dict = {"requests": requests, "resources": resources, "time_limit_s": time_limit,
                    "sample_every_s": SAMPLE_EVERY_S, "cores": os.cpu_count()}
    with throwaway_deployment(admin_url) as env:
        land(env, months, requests, resources, time_limit)
        result.update(measure_runs(env, months[0], months[1:runs + 1]))
        if backfill:
            result.update(measure_backfill(env, months[runs + 1:]))
    result["load_average_1m"] = round(os.getloadavg()[0], 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs at once, and months backfilled (one month each)")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--resources", type=int, default=30)
    parser.add_argument("--time-limit", type=float, default=2.0)
    parser.add_argument("--no-backfill", dest="backfill", action="store_false", help="skip the UI and backfill")
    parser.add_argument("--postgres", default=os.environ.get("BATCH_ADMIN_TEST_POSTGRES",
                                                              "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = measure(args.postgres, args.runs, args.requests, args.resources, args.time_limit, args.backfill)
    emit_json(result, args.json)


if __name__ == "__main__":
    main()
