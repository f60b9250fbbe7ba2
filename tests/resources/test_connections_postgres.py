"""PostgreSQL connections of one run, of three runs at once and of a backfill stay within the budget of
docs/deploy.md, and each process holds one engine's worth: bench.connections' measurement, asserted."""

from __future__ import annotations

import os

import pytest

from batch.months import planned_months
from bench.connections import deployment_env, land, measure_backfill, measure_runs, stop_code_servers
from solvers.schema import SolverParams

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(1200)]

# docs/deploy.md, "Connections against max_connections": the worst case of each process. A process holds
# one control-store engine (pool 2 + overflow 2) and Dagster's storages (NullPool, 2 at once).
CLI, CODE_SERVER, RUN_WORKER, STEP, DAEMON, WEBSERVER = 6, 5, 6, 6, 9, 3
ONE_PROCESS = 4 + 2
RUNS = 3


def solver_pool() -> int:
    """The solver pool's slots as the CLI sizes it (batch_cli.instance.size_solver_pool)."""
    return max(1, (os.cpu_count() or 1) // SolverParams().workers)


def cli_runs_budget(runs: int) -> int:
    """`runs` CLI runs at once: each its CLI, the code server it starts and its run worker; steps: one per
    run (the monthly chain) plus the solve parts the solver pool admits."""
    return runs * (CLI + CODE_SERVER + RUN_WORKER) + STEP * (runs + solver_pool())


def backfill_budget(runs: int) -> int:
    """A backfill executing `runs` runs (at most max_concurrent_runs): daemon, webserver, their two code
    servers, the run workers and their steps."""
    return DAEMON + WEBSERVER + 2 * CODE_SERVER + runs * RUN_WORKER + STEP * (runs + solver_pool())


def test_one_run_and_three_runs_at_once_stay_within_the_budget_and_leave_no_connection(postgres_url, tmp_path):
    env = deployment_env(postgres_url, tmp_path / "home")
    months = planned_months()[-(RUNS + 1):]
    try:
        land(env, months, requests=300, resources=30, time_limit=2.0)
        figures = measure_runs(env, months[0], months[1:])
    finally:
        stop_code_servers(tmp_path / "home")
    print(figures)  # the figures docs/deploy.md reports, for the test log
    assert figures["idle"]["peak"] == 0, figures["idle"]
    assert 0 < figures["one_run"]["peak"] <= cli_runs_budget(1), figures["one_run"]
    assert 0 < figures["concurrent_runs"]["peak"] <= cli_runs_budget(RUNS), figures["concurrent_runs"]
    for phase in ("one_run", "concurrent_runs"):
        assert figures[phase]["peak_one_process"] <= ONE_PROCESS, figures[phase]  # one engine per process
    # Every process disposed its engine: nothing is left connected once the runs are over.
    assert figures["after_runs"]["peak"] == 0, figures["after_runs"]


def test_a_backfill_of_three_months_stays_within_the_budget(postgres_url, tmp_path):
    env = deployment_env(postgres_url, tmp_path / "home")
    months = planned_months()[-RUNS:]
    try:
        land(env, months, requests=300, resources=30, time_limit=2.0)
        figures = measure_backfill(env, months)
    finally:
        stop_code_servers(tmp_path / "home")
    print(figures)
    assert figures["ui_idle"]["peak"] <= DAEMON + WEBSERVER + 2 * CODE_SERVER, figures["ui_idle"]
    assert 0 < figures["backfill"]["peak"] <= backfill_budget(RUNS), figures["backfill"]
    assert figures["backfill"]["peak_one_process"] <= ONE_PROCESS, figures["backfill"]
