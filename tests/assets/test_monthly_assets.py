"""The monthly asset graph through Dagster: materialize, final lock on every path, one run per month."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from click.testing import CliRunner

from assets.guards import MONTH_HELD
from assets.monthly import monthly_assets
from assets.partitions import monthly_partitions
from batch.identity import TICKET_TAG, make_ticket
from batch.roles import NOTE_TAG
from batch_cli.instance import prepare
from batch_cli.main import main
from batch_cli.runs import run_job
from pipelines.definitions import defs
from pipelines.jobs import EXECUTE_JOB
from resources.control_store import ControlStore
from resources.settings import Settings
from tests.conftest import use_home
from tests.signing import demo_key as key_of
from tests.signing import ticket_tags

KEYS = monthly_partitions.get_partition_keys()
MONTHS = KEYS[-3:]


def cli(*args: str) -> None:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output + result.stderr


def land(month: str, requests: int = 250) -> None:
    cli("demo-data", month, "--requests", str(requests), "--resources", "25", "--seed", "1")
    cli("params", month, "--actor", "alice", "--set", "time_limit_s=2")


def tree_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_partitions_are_months_up_to_and_including_next_month():
    import datetime as dt

    today = dt.date.today()
    next_month = f"{today.year + (today.month == 12)}-{today.month % 12 + 1:02d}"
    assert KEYS[-1] == next_month and KEYS[0] == "2025-01"


def test_the_asset_graph_keeps_its_keys_checks_and_partitions():
    graph = defs.resolve_asset_graph()
    keys = sorted(k.to_user_string() for k in graph.get_all_asset_keys())
    assert keys == sorted(["landed_inputs", "validated_inputs", "capacity_plan", "allocation_parts", "allocation_proposal",
                           "allocation_export", "final_allocation", "planned_vs_actual"])
    checks = sorted(k.name for k in graph.asset_check_keys)
    assert checks == sorted(["inputs_meet_expectations", "no_resource_over_capacity", "no_ineligible_pair",
                             "must_allocate_requests_served", "unallocated_ratio_near_trailing_months",
                             "utilization_near_trailing_months", "success_rate_at_least_minimum",
                             "no_resource_above_maximum_utilization", "final_allocation_matches_approved_version"])
    for key in graph.get_all_asset_keys():
        assert graph.get(key).partitions_def == monthly_partitions


def test_materializing_a_partition_writes_version_one_with_passing_checks(home):
    month = MONTHS[-1]
    land(month)
    prepare()
    with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        result = dg.materialize(
            [a for a in monthly_assets if a.key.to_user_string() != "final_allocation"],
            partition_key=month, instance=instance, tags=ticket_tags("alice", "__ephemeral_asset_job__", month),
            resources=defs.resources,
        )
        assert result.success
        evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    for name in ("inputs_meet_expectations", "no_resource_over_capacity", "no_ineligible_pair",
                 "must_allocate_requests_served"):
        assert evaluations[name] is True
    versions = ControlStore(Settings.from_env().control_url).versions(month)
    assert [v["version"] for v in versions] == [1]


@pytest.mark.slow
def test_a_run_over_several_months_leaves_a_finalized_month_byte_for_byte_unchanged(materialized_month):
    # The last month has its version 1 already (the suite's materialized month): it is the one finalized.
    home, finalized = materialized_month.home, materialized_month.month
    assert finalized == MONTHS[-1]
    for month in MONTHS[:-1]:
        land(month)
    cli("finalize", finalized, "--version", "1", "--actor", "alice", "--note", "reviewed")
    cli("approve", ControlStore(Settings.from_env().control_url).requests(finalized)[0].id, "--actor", "bob")
    exports = home / "exports"
    before = tree_hashes(exports / "allocations" / f"month={finalized}") | {
        f"final/{k}": v for k, v in tree_hashes(exports / "final" / f"month={finalized}").items()}

    # One ticket for the months of a backfill: one run each.
    backfill = make_ticket(key_of("alice"), "alice", EXECUTE_JOB, MONTHS, 15).encode()
    outcomes = {m: run_job(EXECUTE_JOB, m, {TICKET_TAG: backfill, NOTE_TAG: "backfill"}) for m in MONTHS}
    # A run launched without a ticket, as a UI backfill without one would be, writes nothing either.
    outcomes_no_ticket = run_job(EXECUTE_JOB, finalized, {})

    assert not outcomes[finalized].success and not outcomes_no_ticket.success
    assert f"Month {finalized} is finalized (version 1, by alice, approved by bob" in outcomes[finalized].error
    assert "carries no run ticket" in outcomes_no_ticket.error
    after = tree_hashes(exports / "allocations" / f"month={finalized}") | {
        f"final/{k}": v for k, v in tree_hashes(exports / "final" / f"month={finalized}").items()}
    assert after == before
    store = ControlStore(Settings.from_env().control_url)
    assert [v["version"] for v in store.versions(finalized)] == [1]
    for month in MONTHS[:-1]:
        assert outcomes[month].success, outcomes[month].error
        assert [v["version"] for v in store.versions(month)] == [1]


@pytest.mark.slow
def test_two_runs_of_one_month_never_execute_at_the_same_time(home):
    month = MONTHS[-1]
    cli("demo-data", month, "--requests", "400", "--resources", "30", "--seed", "2")
    cli("params", month, "--actor", "alice", "--set", "time_limit_s=6")
    env = {**os.environ, "BATCH_ADMIN_HOME": str(home)}
    exe = str(Path(sys.executable).with_name("batch-admin"))
    procs = [subprocess.Popen([exe, "run", month, "--actor", "alice", "--note", f"racer {i}"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    store = ControlStore(Settings.from_env().control_url)
    winners = [r for r in results if r[0] == 0]
    losers = [r for r in results if r[0] != 0]
    assert len(winners) >= 1
    assert len(store.versions(month)) == len(winners)
    for _, stderr in losers:
        assert "never execute at the same time" in stderr
    assert store.lease_holder(month) is None
    # Whatever the interleaving, two runs never held the month at the same time: from the moment a
    # run holds it (after waiting for the previous holder, if it had to) to the end of its last step.
    prepare()
    with dg.DagsterInstance.get() as instance:
        spans = []
        for record in instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS])):
            run_id = record.dagster_run.run_id
            logs = instance.all_logs(run_id)
            held = [e.timestamp for e in logs if (e.user_message or "").startswith(MONTH_HELD)]
            stats = [s for s in instance.get_run_step_stats(run_id) if s.end_time]
            # Said once, by the step that took the month; no DEBUG lines kept (python_logs: INFO).
            assert len(held) == 1 and not [e for e in logs if e.level == logging.DEBUG and e.dagster_event is None]
            if held:
                spans.append((min(held), max(s.end_time for s in stats)))
    spans.sort()
    assert len(spans) == len(winners)
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:]))


def test_dagster_loads_and_validates_the_code_location_from_the_root():
    root = Path(__file__).resolve().parents[2]
    exe = Path(sys.executable).with_name("dagster")
    result = subprocess.run([str(exe), "definitions", "validate", "-w", "workspace.yaml"], cwd=root,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_a_month_solve_fans_out_as_one_step_per_part(home):
    month = MONTHS[-1]
    land(month, requests=400)
    cli("params", month, "--actor", "alice", "--set", "max_parts=3")
    outcome = run_job(EXECUTE_JOB, month, ticket_tags("alice", EXECUTE_JOB, month))
    assert outcome.success, outcome.error
    prepare()
    with dg.DagsterInstance.get() as instance:
        steps = {s.step_key for s in instance.get_run_step_stats(outcome.run_id)}
    assert {f"allocation_parts.solve_part[part_{i}]" for i in range(3)} <= steps
    manifest_parts = ControlStore(Settings.from_env().control_url).versions(month)[0]["metrics"]["parts"]
    assert manifest_parts == 3
    # Every value passed between the steps is Parquet (+ JSON) under the IO base: nothing is pickled.
    dagster_home = Settings.from_env().dagster_home
    files = [p for p in dagster_home.rglob("*") if p.is_file()]
    assert not [p for p in files if p.read_bytes()[:1] == b"\x80"]
    io_base = Path(Settings.from_env().io_base)
    for asset in ("landed_inputs", "validated_inputs", "capacity_plan", "allocation_parts", "allocation_proposal"):
        assert list((io_base / asset / month).glob("*.parquet")), asset
    parts = list(io_base.glob(f"{outcome.run_id}/allocation_parts.solve_part*/result/*.parquet"))
    assert len({p.parent.parent.name for p in parts}) == 3


def _run_in_background(home: Path, month: str, note: str) -> subprocess.Popen:
    exe = str(Path(sys.executable).with_name("batch-admin"))
    return subprocess.Popen([exe, "run", month, "--actor", "alice", "--note", note, "--json"],
                            env={**os.environ, "BATCH_ADMIN_HOME": str(home)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_parameter_change_during_a_run_applies_to_the_next_run_only(tmp_path, monkeypatch):
    """Also the test that a deterministic work budget gives the same allocation in two homes (it was a test of
    its own, which ran the same month in two more homes): the quiet home and the changed one are two homes."""
    month = MONTHS[-1]
    # The deterministic budget, not the wall clock, ends each part's solve (a generous time limit).
    before = ["deterministic_work=2", "seed=7", "time_limit_s=600"]
    allocations = {}
    for name, change_during_run in (("quiet", False), ("changed", True)):
        home = tmp_path / name
        use_home(monkeypatch, home)
        land(month, requests=400)
        cli("params", month, "--actor", "alice", *[a for p in before for a in ("--set", p)])
        run = _run_in_background(home, month, "first")
        store = ControlStore(Settings.from_env().control_url)
        if change_during_run:
            while not store.run_snapshots(month):
                assert run.poll() is None, run.stderr.read()
            # The run has started (its snapshot is taken) and is still executing.
            cli("params", month, "--actor", "alice", "--set", "seed=99", "--set", "weight.1=5",
                "--set", "deterministic_work=0.5")
            assert run.poll() is None
        assert run.wait(timeout=300) == 0, run.stderr.read()
        [snapshot] = store.run_snapshots(month)
        assert snapshot["params"] == {"deterministic_work": 2.0, "seed": 7, "time_limit_s": 600.0}
        [version] = store.versions(month)
        assert version["params"]["seed"] == 7 and version["params"]["weights"]["1"] == 1000
        path = home / "exports" / "allocations" / f"month={month}" / "version=1" / "allocations.parquet"
        allocations[name] = pd.read_parquet(path)
        if change_during_run:
            assert store.params(month)["seed"] == 99  # the change is kept for the next run
    # Same inputs, same snapshot, deterministic budget: the change did not touch the allocation.
    pd.testing.assert_frame_equal(allocations["quiet"], allocations["changed"])
