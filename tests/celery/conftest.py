"""Fixtures of the Celery tests: the real RabbitMQ (a private vhost per test), a throw-away PostgreSQL
database, and `batch-admin worker` processes, each in its own process group and working directory."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest

from batch_cli.instance import REPO_ROOT
from resources.execution import SOLVER_POOL
from resources.settings import psycopg2_url
from tests.e2e.conftest import BIN, Services, missing, stop
from tests.signing import install_keys

RABBITMQ_HOST, RABBITMQ_PORT = "127.0.0.1", 5672
# Every wait is bounded.
WORKER_READY_S = 60
WORKER_STOP_S = 20
CLI_TIMEOUT_S = 300
PRODUCT_VARS = ("BATCH_ADMIN_HOME", "BATCH_ADMIN_POSTGRES_URL", "BATCH_ADMIN_CONTROL_URL", "BATCH_ADMIN_IO_BASE",
                "BATCH_ADMIN_ACTOR", "BATCH_ADMIN_ALERT_WEBHOOK", "BATCH_ADMIN_ROLES", "BATCH_ADMIN_EXECUTOR",
                "BATCH_ADMIN_CELERY_BROKER", "DAGSTER_HOME")


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def broker_url() -> Iterator[str]:
    """A private vhost on the real RabbitMQ (its own queues: solver, default, the result queues),
    deleted afterwards; skips (fails in CI) when RabbitMQ or rabbitmqctl is missing."""
    try:
        socket.create_connection((RABBITMQ_HOST, RABBITMQ_PORT), timeout=3).close()
    except OSError as exc:
        missing(f"RabbitMQ at {RABBITMQ_HOST}:{RABBITMQ_PORT} is unreachable ({exc}); start it with "
                f"`rabbitmq-server -detached`")
    if shutil.which("rabbitmqctl") is None:
        missing("rabbitmqctl is not installed: the Celery tests make a private vhost with it")
    vhost = f"ba_test_{uuid.uuid4().hex[:10]}"
    try:
        rabbitmqctl("add_vhost", vhost)
    except subprocess.CalledProcessError as exc:
        missing(f"rabbitmqctl add_vhost failed: {exc.stderr.decode(errors='replace').strip()}")
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"pyamqp://guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


@dataclass
class Deployment:
    """One deployment on the Celery executor: its settings, and what its CLI and workers do."""

    home: Path
    env: dict[str, str]
    logs: Path
    workers: list[subprocess.Popen] = field(default_factory=list)

    def cli(self, *args: str, ok: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """One batch-admin command in its own process, as an admin types it."""
        done = subprocess.run([str(BIN / "batch-admin"), *args], env={**(env or self.env), "COLUMNS": "200"},
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)
        if ok and done.returncode != 0:
            raise AssertionError(f"batch-admin {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done

    def start_worker(self, name: str, queues: str = "solver,default", env: dict[str, str] | None = None,
                     concurrency: int = 1) -> subprocess.Popen:
        """`batch-admin worker` in a working directory of its own and a process group of its own."""
        cwd = self.logs / name
        cwd.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("wb") as out:
            proc = subprocess.Popen([str(BIN / "batch-admin"), "worker", "--queues", queues,
                                     "--concurrency", str(concurrency)],
                                    env=env or self.env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.workers.append(proc)
        self._wait_ready(proc, self.logs / f"{name}.log")
        return proc

    def _wait_ready(self, proc: subprocess.Popen, log: Path) -> None:
        deadline = time.monotonic() + WORKER_READY_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
            if " ready." in log.read_text(errors="replace"):
                return
            time.sleep(0.3)
        raise TimeoutError(f"the worker was not ready within {WORKER_READY_S}s:\n{log.read_text(errors='replace')}")

    def worker_logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.logs.glob("*.log")))

    def stop_workers(self) -> None:
        """SIGKILL each worker's group (the test is over: no warm shutdown to wait for); no process of theirs
        survives."""
        workers = Services(home=self.home, port=0, procs=self.workers)
        stop(workers, hard=True)
        assert not workers.survivors(), f"worker processes survived the stop: {workers.survivors()}"

    def instance(self) -> dg.DagsterInstance:
        """The deployment's Dagster instance (PostgreSQL), opened in this process."""
        return dg.DagsterInstance.from_config(str(self.home / "dagster"))


@pytest.fixture
def deployment(tmp_path, postgres_url, broker_url) -> Iterator[Deployment]:
    """Settings of a Celery deployment on a fresh database and vhost, its schema migrated; the
    workers that a test starts are stopped afterwards."""
    home = tmp_path / "home"
    env = {name: value for name, value in os.environ.items() if name not in PRODUCT_VARS}
    env.update({"BATCH_ADMIN_HOME": str(home), "BATCH_ADMIN_POSTGRES_URL": postgres_url,
                "BATCH_ADMIN_EXECUTOR": "celery", "BATCH_ADMIN_CELERY_BROKER": broker_url,
                **install_keys(tmp_path / "people")})
    with pytest.MonkeyPatch.context() as mp:
        # Deployment.instance() reads the instance's dagster.yaml, which names this variable.
        mp.setenv("BATCH_ADMIN_POSTGRES_URL", psycopg2_url(postgres_url))
        found = Deployment(home=home, env=env, logs=tmp_path / "workers")
        found.logs.mkdir()
        try:
            found.cli("migrate")
            with found.instance() as instance:
                # Two solves at a time, one per worker: the operator sizes the pool to the workers.
                instance.event_log_storage.set_concurrency_slots(SOLVER_POOL, 2)
            yield found
        finally:
            found.stop_workers()
