"""Fixtures of the end-to-end tests: real PostgreSQL, chromium, and the Dagster daemon and webserver."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from batch_cli.instance import REPO_ROOT, prepare
from resources.settings import Settings
from tests.conftest import POSTGRES_ADMIN_URL as ADMIN_URL
from tests.conftest import throwaway_database

BIN = Path(sys.executable).parent
WORKSPACE = str(REPO_ROOT / "workspace.yaml")
# Every wait is bounded: the whole e2e folder must stay within a few minutes.
STARTUP_TIMEOUT_S = 90
STOP_TIMEOUT_S = 20
ENV_NAMES = ("BATCH_ADMIN_HOME", "BATCH_ADMIN_POSTGRES_URL", "BATCH_ADMIN_CONTROL_URL", "BATCH_ADMIN_IO_BASE", "BATCH_ADMIN_ACTOR",
             "BATCH_ADMIN_EXECUTOR", "BATCH_ADMIN_CELERY_BROKER",
             "BATCH_ADMIN_ALERT_WEBHOOK", "BATCH_ADMIN_ROLES", "DAGSTER_HOME")


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def missing(reason: str) -> None:
    """A prerequisite is absent: a failure in CI, a skip with the reason elsewhere."""
    if in_ci():
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The real PostgreSQL server's maintenance database; skips (fails in CI) when unreachable."""
    import psycopg2

    try:
        psycopg2.connect(ADMIN_URL, connect_timeout=3).close()
    except psycopg2.OperationalError as exc:
        missing(f"PostgreSQL at {ADMIN_URL} is unreachable: {str(exc).strip()}")
    return ADMIN_URL


@pytest.fixture(scope="module")
def e2e_database(postgres_admin_url: str) -> Iterator[str]:
    """A fresh database e2e_<random>, as the plain postgresql:// URL a user writes; dropped afterwards."""
    with throwaway_database(postgres_admin_url, "e2e") as url:
        yield url


@pytest.fixture(scope="session")
def chromium() -> str:
    """The chromium binary; skips (fails in CI) when it is not installed."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        missing("chromium is not installed (apt-get install -y chromium)")
    return path


@pytest.fixture(scope="module")
def browser(chromium):
    """Playwright's chromium, Debian's binary (Playwright downloads no browser here), one per module: Playwright's
    sync API holds an event loop while it runs, which tests of other modules must not meet."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install -r requirements.lock)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def isolated_env() -> Iterator[pytest.MonkeyPatch]:
    """Module-wide environment changes, undone afterwards; no product variable leaks in."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ENV_NAMES:
            mp.delenv(name, raising=False)
        yield mp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, read from /proc."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


@dataclass
class Services:
    """The Dagster daemon and webserver of one instance, each in its own process group."""

    home: Path
    port: int
    procs: list[subprocess.Popen] = field(default_factory=list)
    log_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        if self.log_dir is None:
            return ""
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(self.log_dir.glob("*.log")))

    def survivors(self) -> list[int]:
        return [pid for proc in self.procs for pid in _group_members(proc.pid)]


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        # A new session per service: stopping it reaches its code servers and run workers too.
        return subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_ready(services: Services) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        for proc in services.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n{services.logs()}")
        try:
            with urllib.request.urlopen(f"{services.url}/server_info", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the webserver did not answer /server_info within {STARTUP_TIMEOUT_S}s:\n{services.logs()}")


def stop(services: Services, hard: bool = False) -> None:
    """SIGTERM every group, wait, SIGKILL what is left; then no process of ours may survive. `hard`: SIGKILL
    at once, for services whose graceful exit no test asserts (a throwaway home after its tests): a daemon
    and webserver took 5-7 s to exit on SIGTERM."""
    for proc in services.procs:
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGKILL if hard else signal.SIGTERM)
    for proc in services.procs:
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT_S)
    # Code servers and run workers may outlive their parent briefly; bounded grace, then SIGKILL.
    deadline = time.monotonic() + 10
    while services.survivors() and time.monotonic() < deadline:
        time.sleep(0.2)
    for proc in services.procs:
        if _group_members(proc.pid):
            _signal_group(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while services.survivors() and time.monotonic() < deadline:
        time.sleep(0.2)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


@contextmanager
def dagster_services(home: Path, env: dict[str, str], log_dir: Path, daemon: bool = True) -> Iterator[Services]:
    """Start dagster-daemon (optional) and dagster-webserver on DAGSTER_HOME=home; stop them on exit."""
    env = {**env, "DAGSTER_HOME": str(home)}
    services = Services(home=home, port=free_port(), log_dir=log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    # One process creates the instance's storages first, as `batch-admin ui` and `dagster dev` do:
    # a daemon and a webserver started together on a new SQLite home both create its event log's
    # index shard, and Dagster's own race there can stamp two alembic revisions into it.
    migrate(env)
    try:
        if daemon:
            services.procs.append(_start([str(BIN / "dagster-daemon"), "run", "-w", WORKSPACE], env,
                                         log_dir / "daemon.log"))
        services.procs.append(_start([str(BIN / "dagster-webserver"), "-w", WORKSPACE, "-h", "127.0.0.1",
                                      "-p", str(services.port)], env, log_dir / "webserver.log"))
        _wait_ready(services)
        yield services
    finally:
        stop(services, hard=True)
        survivors = services.survivors()
        assert not survivors, f"processes survived the stop: {survivors}"


def migrate(env: dict[str, str]) -> None:
    """`dagster instance migrate` on the instance of env's DAGSTER_HOME, done in this process (Dagster is
    imported here already): a `dagster` process of its own cost ~3 s of CPU per start of the services."""
    with pytest.MonkeyPatch.context() as mp:
        for name in set(os.environ) - set(env):
            mp.delenv(name)
        for name, value in env.items():
            mp.setenv(name, value)
        with dg.DagsterInstance.get() as instance:
            instance.upgrade()


def small_demo_home(isolated_env: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory, name: str,
                    month: str, cli: Callable[..., Any]) -> Path:
    """A new home (the module's environment points at it) with a small demo month (120 requests, 12 resources,
    a 1-s solve limit), its instance prepared; its DAGSTER_HOME. `cli` runs batch-admin as the module does."""
    home = tmp_path_factory.mktemp(name)
    isolated_env.setenv("BATCH_ADMIN_HOME", str(home))
    isolated_env.setenv("DAGSTER_HOME", str(home / "dagster"))
    dagster_home = prepare(Settings.from_env()).dagster_home
    cli("demo-data", month, "--requests", "120", "--resources", "12")
    cli("params", month, "--actor", "alice", "--set", "time_limit_s=1")
    return dagster_home
