"""The run is the unit (issue 26 item 2): a run is admitted once, by its first step (ticket, roles,
lock, lease, snapshot); each later step re-checks only what can change during a run, in one read.
Counted from the control store's own transaction trace (resources/store_trace.py) over a whole
`batch-admin run` of a small month: the CLI, the run worker and every step process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from batch.names import TRACE_VAR

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

BIN = Path(sys.executable).with_name("batch-admin")
MONTH = "2027-01"
# The writing steps of one run of the monthly chain (assets/guards.CHAIN, the parts split and merge).
STEPS = {"landed_inputs", "validated_inputs", "capacity_plan", "split_month", "merge_parts",
         "allocation_proposal", "allocation_export"}
# Measured on 2026-12-07: 88 transactions before the run was the unit, 41-43 after. The issue's
# target is 15 (docs/performance.md "Control-store transactions of a run" says what is left).
MOST = 45


def cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_run_is_admitted_once_and_each_later_step_reads_once(home):
    env = {**os.environ, "BATCH_ADMIN_HOME": str(home)}
    cli("demo-data", MONTH, "--requests", "200", "--resources", "20", "--seed", "4", env=env)
    cli("params", MONTH, "--actor", "alice", "--set", "time_limit_s=2", env=env)
    trace = home / "transactions.tsv"
    cli("run", MONTH, "--actor", "alice", "--note", "counted", env={**env, TRACE_VAR: str(trace)})

    lines = [line.split("\t")[1:] for line in trace.read_text().splitlines()]
    # (store method, its caller), by function name: the rooms the store is kept in may move.
    calls = Counter((frames[0].rsplit(".", 1)[-1], frames[1].rsplit(".", 1)[-1]) for frames in lines)
    callers = {frames[2].rsplit(".", 1)[-1] for frames in lines if frames[0].endswith(".resume_run")}

    assert calls[("_signed", "claim_ticket")] == 1, calls  # the run ticket: claimed once per run
    assert calls[("acquire_lease", "take_month")] == 1, calls  # the month: taken once
    assert calls[("run_snapshot", "begin_write")] == 1, calls  # the snapshot: taken once
    assert callers == STEPS, callers  # every step asked once whether its run still holds the month
    assert sum(count for (method, _), count in calls.items() if method == "resume_run") == len(STEPS)
    assert len(lines) <= MOST, calls
