"""kill -9 at named points of a version write and of finalization, then recovery: `status` and
`audit --verify` flag what was left half done, `batch-admin repair` completes or rolls it back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from assets.partitions import monthly_partitions
from batch.names import CRASH_VAR

MONTH = monthly_partitions.get_partition_keys()[-1]
BIN = Path(sys.executable).with_name("batch-admin")
pytestmark = pytest.mark.slow  # each test runs several cold CLI commands, a run or a finalization among them


def cli(home: Path, *args: str, ok: bool = True, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "BATCH_ADMIN_HOME": str(home), "COLUMNS": "200"}
    env.pop(CRASH_VAR, None)
    if crash_at:
        env[CRASH_VAR] = crash_at
    done = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=600)
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done


def status(home: Path) -> dict:
    return json.loads(cli(home, "status", MONTH, "--json").stdout)


@pytest.fixture
def proposed(materialized_month):
    """A home whose month has landed and has version 1 (a copy of the suite's materialized month)."""
    assert materialized_month.month == MONTH
    return materialized_month.home


def _file_and_crash(home: Path, point: str) -> str:
    request = json.loads(cli(home, "finalize", MONTH, "--version", "1", "--actor", "alice", "--note", "ok",
                             "--json").stdout)["id"]
    crashed = cli(home, "approve", request, "--actor", "bob", ok=False, crash_at=point)
    assert "Step final_allocation died" in crashed.stderr
    return request


def test_a_crash_after_the_official_copy_is_published_is_flagged_and_completed_by_repair(proposed):
    home = proposed
    request = _file_and_crash(home, "final_commit")
    state = status(home)
    # The store did not commit the final lock, but the official copy is there: flagged, not hidden.
    assert state["phase"] == "proposed"
    assert "does not record as finalized" in state["official_copy_problem"]
    assert [(r["id"], r["status"]) for r in state["requests"]] == [(request, "approved")]
    verify = cli(home, "audit", "--verify", ok=False)
    assert "does not record as finalized" in verify.stderr and "batch-admin repair" in verify.stderr
    repaired = cli(home, "repair", MONTH, "--actor", "bob")
    assert f"the approved request {request}" in repaired.stdout
    state = status(home)
    assert state["phase"] == "finalized" and state["final"]["version"] == 1
    assert state["official_copy_problem"] is None and state["requests"] == []
    assert "intact" in cli(home, "audit", "--verify").stdout
    assert "nothing to repair" in cli(home, "repair", MONTH).stdout


def test_a_crash_during_the_final_copy_leaves_no_official_copy_and_repair_completes_it(proposed):
    home = proposed
    request = _file_and_crash(home, "final_copy")
    state = status(home)
    assert state["phase"] == "proposed" and state["official_copy_problem"] is None
    assert not (home / "exports" / "final" / f"month={MONTH}").exists()
    cli(home, "repair", MONTH, "--actor", "bob")
    state = status(home)
    assert state["phase"] == "finalized" and state["official_copy_problem"] is None
    assert json.loads(cli(home, "requests", MONTH, "--all", "--json").stdout)[0]["status"] == "done"
    assert request in cli(home, "audit", MONTH).stdout
    assert "intact" in cli(home, "audit", "--verify").stdout


def test_an_official_copy_removed_behind_the_stores_back_is_written_again_by_repair(proposed):
    home = proposed
    request = json.loads(cli(home, "finalize", MONTH, "--version", "1", "--actor", "alice", "--note", "ok",
                             "--json").stdout)["id"]
    cli(home, "approve", request, "--actor", "dana")
    final = home / "exports" / "final" / f"month={MONTH}"
    final.unlink()  # the symlink to the official copy
    assert "has no official copy" in status(home)["official_copy_problem"]
    assert "has no official copy" in cli(home, "audit", "--verify", ok=False).stderr
    assert "written again from version 1" in cli(home, "repair", MONTH).stdout
    assert status(home)["official_copy_problem"] is None
    assert "intact" in cli(home, "audit", "--verify").stdout


def test_a_crash_while_a_version_is_written_keeps_every_version_and_the_next_run_goes_on(proposed):
    home = proposed
    crashed = cli(home, "run", MONTH, "--actor", "alice", "--note", "second", ok=False, crash_at="version_write")
    assert "Step allocation_export died" in crashed.stderr
    assert [v["version"] for v in status(home)["versions"]] == [1]
    done = json.loads(cli(home, "run", MONTH, "--actor", "alice", "--note", "third", "--json").stdout)
    assert done["version"] == 3  # version 2 stays reserved by the interrupted write, never reused
    assert "intact" in cli(home, "audit", "--verify").stdout
