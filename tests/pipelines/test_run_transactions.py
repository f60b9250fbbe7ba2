"""The run is the unit (issue 26 item 2): a run is admitted once, by its first step, in one transaction
(ticket, roles, locks, lease, snapshot); each later step re-checks only what can change during a run (its
lease, the final and temporary locks), with the reads that go with it, in one transaction. Counted from
the control store's own transaction trace (resources/store_trace.py) over a whole `batch-admin run` of a
small month: the CLI, the run worker and every step process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from batch.names import TRACE_VAR
from resources.control_store import ControlStore, tickets
from resources.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

BIN = Path(sys.executable).with_name("batch-admin")
MONTH = "2027-01"
# The writing steps of one run of the monthly chain (assets/guards.CHAIN, the parts split and merge).
STEPS = ("landed_inputs", "validated_inputs", "capacity_plan", "split_month", "merge_parts",
         "allocation_proposal", "allocation_export")
# Measured on 2026-12-07: 88 transactions before the run was the unit, 40-43 once later steps re-checked
# in one read, 14 with the admission and each step's check in one transaction (docs/performance.md,
# "Control-store transactions of a run"). The target is 15.
MOST = 15
# The CLI: the store's schema revision, the admission (role, locks, versions), the version it prints.
MOST_CLI = 3


def cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def step_of(frames: list[str]) -> str | None:
    """The step a transaction was opened for: the first caller in its trace that is a step of the chain."""
    return next((name for frame in frames if (name := frame.rsplit(".", 1)[-1]) in STEPS), None)


def test_a_run_is_admitted_once_and_each_step_checks_in_one_transaction(home):
    env = {**os.environ, "BATCH_ADMIN_HOME": str(home)}
    cli("demo-data", MONTH, "--requests", "200", "--resources", "20", "--seed", "4", env=env)
    cli("params", MONTH, "--actor", "alice", "--set", "time_limit_s=2", env=env)
    trace = home / "transactions.tsv"
    cli("run", MONTH, "--actor", "alice", "--note", "counted", env={**env, TRACE_VAR: str(trace)})

    lines = [line.split("\t") for line in trace.read_text().splitlines()]
    # The heartbeat thread writes only when no step beat for LEASE_HEARTBEAT_S: its count is the machine's
    # pace, not the run's; every other transaction is counted.
    beats = [frames for _pid, *frames in lines if frames[0].endswith(".beat_leases")]
    counted = [(pid, frames) for pid, *frames in lines if not frames[0].endswith(".beat_leases")]
    assert all(frames[1].endswith("._beat") for frames in beats), beats
    # Each step opens one transaction for its check (the first step's is the run's admission); the steps
    # that write to the store add their own: capacity_plan its plan, allocation_export its version (with
    # the records its report reads) and the release of the month.
    checks = Counter(step_of(frames) for _pid, frames in counted if frames[0].endswith(".entered"))
    assert checks == Counter(STEPS), checks
    writes = Counter((frames[0].rsplit(".", 1)[-1], step_of(frames)) for _pid, frames in counted
                     if not frames[0].endswith(".entered") and step_of(frames))
    assert writes == Counter({("record_plan", "capacity_plan"): 1, ("allocation_export", "allocation_export"): 1,
                              ("release_lease", "allocation_export"): 1}), writes
    cli_pid = next(pid for pid, frames in counted if frames[0].endswith(".admit_new_run"))
    assert sum(pid == cli_pid for pid, _frames in counted) <= MOST_CLI, counted
    assert len(counted) <= MOST, counted

    # Admitted once: one ticket claimed, one snapshot taken; every check and audit entry of the run is there.
    store = ControlStore(Settings.from_env().control_url)
    try:
        [snapshot] = store.run_snapshots(MONTH)
        with store.read() as conn:
            claimed = conn.execute(sa.select(tickets.c.run_id).where(tickets.c.month == MONTH)).scalars().all()
        assert claimed == [snapshot["run_id"]] and snapshot["actor"] == "alice" and snapshot["note"] == "counted"
        assert snapshot["params"]["time_limit_s"] == 2
        actions = Counter(entry["action"] for entry in store.audit_entries(MONTH))
        assert actions["plan"] == 1 and actions["run"] == 1, actions
        assert store.lease(MONTH) is None  # released by the last step
        assert store.verify_audit().ok
    finally:
        store.dispose()
