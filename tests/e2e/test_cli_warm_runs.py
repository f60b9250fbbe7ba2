"""A CLI run while `batch-admin ui` runs goes to the ui's webserver (its warm code location; the CLI starts no
code server of its own), and a ui killed hard (its ui.json left behind) sends the CLI back to its own path; a
ui stopped with SIGTERM stops its Dagster processes and removes its ui.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from batch_cli.instance import REPO_ROOT, daemon_running, instance
from tests.e2e.conftest import BIN, Services, _group_members, free_port, small_demo_home, stop

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MONTH = pd.Period(pd.Timestamp.today(), freq="M").strftime("%Y-%m")
RUN_TIMEOUT_S = 400
READY_TIMEOUT_S = 180


def cli(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([str(BIN / "batch-admin"), *args], env={**os.environ, "COLUMNS": "200"},
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def versions() -> list[int]:
    return [v["version"] for v in json.loads(cli("status", MONTH, "--json").stdout)["versions"]]


@pytest.fixture(scope="module")
def home(isolated_env, tmp_path_factory) -> Path:
    """A home with a small demo month (its DAGSTER_HOME), shared by the module's tests."""
    return small_demo_home(isolated_env, tmp_path_factory, "warm_home", MONTH, cli)


@pytest.fixture
def ui(home) -> Iterator[tuple[subprocess.Popen, Path]]:
    """`batch-admin ui` on the home, ready (webserver answering, daemon serving the queue)."""
    port = free_port()
    log = home.parent / f"ui-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(BIN / "batch-admin"), "ui", "--port", str(port)], env=dict(os.environ),
                                cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    services = Services(home=home, port=port + 1, procs=[proc], log_dir=home.parent)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"{services.url}/server_info", timeout=2):
                    pass
                if daemon_running(instance()):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"batch-admin ui is not ready:\n{log.read_text()}"
            time.sleep(0.5)
        yield proc, home
    finally:
        stop(services)
        assert not services.survivors()


# One story, one ui started (each start costs 20-40 s): a CLI run goes to the running ui, then the ui is
# killed hard and the next CLI run finds its stale ui.json and runs on its own path.
def test_a_cli_run_goes_to_the_running_uis_webserver_and_runs_on_its_own_once_the_ui_is_killed_hard(ui):
    proc, dagster_home = ui
    found = json.loads((dagster_home / "ui.json").read_text())
    assert found["pid"] == proc.pid and found["url"].startswith("http://127.0.0.1:")
    # The run worker the CLI forks when it runs on its own writes its console here (batch_cli/local_runs.py):
    # the file is created whenever the CLI starts one, even when the worker says nothing.
    own_path = dagster_home / "logs" / "cli-run-worker.log"
    own_path.unlink(missing_ok=True)
    before = versions()
    result = json.loads(cli("run", MONTH, "--actor", "alice", "--note", "x", "--json").stdout)
    assert result["month"] == MONTH and result["version"] == len(before) + 1
    assert versions() == [*before, len(before) + 1]
    run = instance().get_run_by_id(result["run_id"])
    assert run is not None and run.status.value == "SUCCESS"
    assert run.tags["batch_admin/actor"] == "alice" and run.tags["dagster/partition"] == MONTH
    assert "batch_admin/ticket" in run.tags
    assert not own_path.exists(), "the CLI ran the run itself although the ui serves"

    # The ui killed hard: nobody removes its ui.json; the CLI must see that its pid is gone.
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert (dagster_home / "ui.json").exists()
    before = versions()
    result = json.loads(cli("run", MONTH, "--actor", "alice", "--note", "again", "--json").stdout)
    assert result["version"] == len(before) + 1 and versions() == [*before, len(before) + 1]
    assert own_path.exists()


def test_a_ui_stopped_with_sigterm_stops_every_dagster_process_it_started_and_removes_its_file(ui):
    proc, dagster_home = ui
    started = set(_group_members(proc.pid))  # the ui, `dagster dev`, its webserver, daemon and code servers
    assert len(started) >= 4, started
    os.kill(proc.pid, signal.SIGTERM)  # the ui alone, as `kill` or a service manager stops it, not its group
    proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while (left := started & set(_group_members(proc.pid))) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"processes of the ui outlived it: {left}"
    assert not (dagster_home / "ui.json").exists()
