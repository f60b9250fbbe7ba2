"""The whole monthly workflow through the `batch-admin` CLI, on the embedded default."""

from __future__ import annotations

import json

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner

from assets.partitions import monthly_partitions
from batch.identity import DEMO_KEYS_DIR, KEY_VAR
from batch.inputs import load_landing
from batch_cli.main import main
from solvers import build_instance
from solvers.validation import ineligible_rows, over_capacity_rows

MONTH = monthly_partitions.get_partition_keys()[-1]  # next month


def cli(*args: str, ok: bool = True, env: dict[str, str] | None = None):
    result = CliRunner(env=env).invoke(main, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output + result.stderr
    else:
        assert result.exit_code == 1, result.output
    return result


def status(month: str = MONTH) -> dict:
    return json.loads(cli("status", month, "--json").stdout)


@pytest.fixture
def landed(home):
    cli("demo-data", MONTH, "--requests", "400", "--resources", "40", "--seed", "3")
    cli("params", MONTH, "--actor", "alice", "--set", "time_limit_s=2")
    return home


@pytest.mark.slow
def test_an_admin_plans_runs_adjusts_finalizes_and_unlocks_a_month(landed):
    plan = json.loads(cli("plan", MONTH, "--actor", "alice", "--json").stdout)
    assert plan["plan"]["requests"] == 400 and status()["phase"] == "planning"

    first = json.loads(cli("run", MONTH, "--actor", "alice", "--json").stdout)
    assert first["version"] == 1 and 0 < first["success_rate"] <= 1
    assert first["objective"] <= first["bound"] + 1e-6

    refused = cli("run", MONTH, "--actor", "alice", ok=False)
    assert "needs a change note" in refused.stderr

    victim = pd.read_parquet(f"{first['export_path']}/allocations.parquet").query("status == 'allocated'").iloc[0]
    cli("adjust", MONTH, "--actor", "alice", "--exclude", victim.request_id, "--note", "customer cancelled")
    second = json.loads(cli("run", MONTH, "--actor", "alice", "--note", "cancelled one", "--json").stdout)
    rows = pd.read_parquet(f"{second['export_path']}/allocations.parquet").set_index("request_id")
    assert rows.loc[victim.request_id, "status"] == "excluded"

    moved = json.loads(cli("diff", MONTH, "--from", "1", "--to", "2", "--json").stdout)
    assert victim.request_id in {r["request_id"] for r in moved["removed"]}

    assert "not an admin" in cli("finalize", MONTH, "--version", "2", "--actor", "bob", "--note", "ok", ok=False).stderr
    filed = json.loads(cli("finalize", MONTH, "--version", "2", "--actor", "alice", "--note", "reviewed", "--json").stdout)
    assert status()["phase"] == "proposed" and status()["requests"][0]["id"] == filed["id"]  # a request alone changes nothing
    assert "may not approve it" in cli("approve", filed["id"], "--actor", "alice", ok=False).stderr
    assert "approver role" in cli("approve", filed["id"], "--actor", "carol", ok=False).stderr
    forged = cli("approve", filed["id"], "--actor", "bob", ok=False, env={KEY_VAR: str(DEMO_KEYS_DIR / "alice.key")})
    assert "not signed with bob's key" in forged.stderr
    assert status()["phase"] == "proposed"
    cli("approve", filed["id"], "--actor", "bob")
    assert "is done by bob" in cli("approve", filed["id"], "--actor", "dana", ok=False).stderr
    state = status()
    assert state["phase"] == "finalized" and state["final"]["version"] == 2
    final = pd.read_parquet(landed / "exports" / "final" / f"month={MONTH}" / "allocations.parquet")
    approved = rows.reset_index()[final.columns].sort_values("request_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(final.sort_values("request_id").reset_index(drop=True), approved)

    for args in (("run", MONTH, "--actor", "alice", "--note", "again"),
                 ("params", MONTH, "--actor", "alice", "--set", "seed=4"),
                 ("plan", MONTH, "--actor", "alice")):
        refused = cli(*args, ok=False)
        assert "is finalized (version 2, by alice, approved by bob" in refused.stderr
        assert "batch-admin unlock" in refused.stderr
    assert status()["versions"][-1]["version"] == 2

    assert "non-empty --reason" in cli("unlock", MONTH, "--actor", "alice", "--reason", " ", ok=False).stderr
    unlock = json.loads(cli("unlock", MONTH, "--actor", "alice", "--reason", "capacity file was wrong", "--json").stdout)
    assert status()["phase"] == "finalized"
    cli("approve", unlock["id"], "--actor", "dana")
    assert status()["phase"] == "proposed"
    assert not (landed / "exports" / "final" / f"month={MONTH}").exists()  # no official copy of an unlocked month
    alerts = json.loads(cli("alerts", MONTH, "--json").stdout)
    assert any(a["rule"] == "month_unlocked" for a in alerts)

    audit = json.loads(cli("audit", MONTH, "--json").stdout)
    actions = [e["action"] for e in audit]
    for expected in ("params", "plan", "run", "adjust", "request", "approve", "refused", "finalize", "unlock"):
        assert expected in actions
    assert "intact" in cli("audit", MONTH, "--verify").output
    listed = json.loads(cli("requests", MONTH, "--all", "--json").stdout)
    assert [(r["kind"], r["status"], r["decided_by"]) for r in listed] == [("finalize", "done", "bob"),
                                                                           ("unlock", "done", "dana")]


def test_the_export_never_exceeds_a_capacity_or_uses_an_ineligible_pair(materialized_month):
    result, landed = materialized_month.run, materialized_month.home
    tables = load_landing(landed, MONTH)
    instance = build_instance(MONTH, tables.requests, tables.resources, availability=tables.availability)
    rows = duckdb.sql(
        "SELECT * FROM read_parquet(?, hive_partitioning=true)",
        params=[str(landed / "exports" / "allocations" / "*" / "*" / "*.parquet")]).df()
    assert set(rows["version"]) == {1} and set(rows["month"]) == {MONTH}
    allocations = rows[["request_id", "resource_id", "units", "cost", "status", "reason"]]
    assert over_capacity_rows(instance, allocations).empty
    assert ineligible_rows(instance, allocations).empty
    assert result["allocated"] == int(rows["resource_id"].notna().sum())


def test_a_temporary_lock_keeps_other_admins_and_unknown_identities_out(landed):
    cli("lock", MONTH, "--actor", "alice", "--admins", "alice", "--ttl", "1")
    assert "already locked by alice" in cli("lock", MONTH, "--actor", "carol", "--admins", "carol", ok=False).stderr
    assert "carol may not run" in cli("run", MONTH, "--actor", "carol", ok=False).stderr
    assert "Unknown identity 'mallory'" in cli("run", MONTH, "--actor", "mallory", ok=False).stderr
    assert "No private key for carol" in cli("lock", MONTH, "--actor", "carol", "--admins", "carol", ok=False,
                                             env={KEY_VAR: "/nonexistent/carol.key"}).stderr
    assert "not an admin" in cli("run", MONTH, "--actor", "bob", ok=False).stderr
    cli("release", MONTH, "--actor", "alice")
    assert status()["lock"] is None


def test_a_missing_input_column_is_one_clear_error_and_keeps_earlier_versions(materialized_month):
    landed = materialized_month.home
    version_dir = landed / "exports" / "allocations" / f"month={MONTH}" / "version=1"
    before = {str(p.relative_to(version_dir)): p.read_bytes() for p in version_dir.rglob('*') if p.is_file()}
    requests = landed / "landing" / MONTH / "requests.parquet"
    pd.read_parquet(requests).drop(columns=["units"]).to_parquet(requests)
    refused = cli("run", MONTH, "--actor", "alice", "--note", "retry", ok=False)
    first_line = refused.stderr.strip().splitlines()[0]
    assert "requests" in first_line and "units" in first_line
    assert {str(p.relative_to(version_dir)): p.read_bytes() for p in version_dir.rglob('*') if p.is_file()} == before
    assert [v["version"] for v in status()["versions"]] == [1]


def test_bad_arguments_are_refused_with_one_sentence(landed):
    assert "must look like YYYY-MM" in cli("run", "2026-13", "--actor", "alice", ok=False).stderr
    assert "not one of the monthly partitions" in cli("run", "2031-01", "--actor", "alice", ok=False).stderr
    assert "Unknown parameter 'speed'" in cli("params", MONTH, "--actor", "alice", "--set", "speed=3", ok=False).stderr
    assert "between" in cli("params", MONTH, "--actor", "alice", "--set", "time_limit_s=-1", ok=False).stderr
    assert "Give --actor" in cli("run", MONTH, ok=False).stderr
    # Exporting is audited under a known identity.
    out = str(landed.parent / "out.csv")
    assert "Give --actor" in cli("export", MONTH, "--format", "csv", "--out", out, ok=False).stderr
    assert "Unknown identity 'mallory'" in cli("export", MONTH, "--actor", "mallory", "--format", "csv",
                                              "--out", out, ok=False).stderr
    assert "inside the home folder" in cli("export", MONTH, "--actor", "alice", "--format", "csv",
                                            "--out", str(landed / "control.db"), ok=False).stderr


def test_exports_from_the_cli_open_in_their_tools_with_exactly_the_rows_asked_for(materialized_month, tmp_path):
    import openpyxl

    landed = materialized_month.home
    rows = pd.read_parquet(landed / "exports" / "allocations" / f"month={MONTH}" / "version=1" / "allocations.parquet")
    service = rows["service"].iloc[0]
    expected = rows[(rows["service"] == service) & (rows["status"] == "unallocated")]

    csv_path = tmp_path / "filtered.csv"
    result = json.loads(cli("export", MONTH, "--actor", "alice", "--format", "csv", "--service", service, "--status", "unallocated",
                            "--out", str(csv_path), "--json").stdout)
    assert result["rows"] == len(expected)
    assert sorted(pd.read_csv(csv_path)["request_id"]) == sorted(expected["request_id"])

    xlsx_path = tmp_path / "month.xlsx"
    cli("export", MONTH, "--actor", "alice", "--version", "1", "--format", "xlsx", "--out", str(xlsx_path))
    book = openpyxl.load_workbook(xlsx_path, read_only=True)
    assert {"allocations", "summary"} <= set(book.sheetnames)
    assert book["allocations"].max_row == len(rows) + 1

    parquet_path = tmp_path / "month.parquet"
    cli("export", MONTH, "--actor", "alice", "--format", "parquet", "--out", str(parquet_path))
    assert len(pd.read_parquet(parquet_path)) == len(rows)

    assert "status" in cli("export", MONTH, "--actor", "alice", "--format", "csv", "--status", "lost", "--out", str(tmp_path / "x.csv"),
                           ok=False).stderr
    assert "has no final allocation" in cli("export", MONTH, "--actor", "alice", "--final", "--format", "csv",
                                            "--out", str(tmp_path / "f.csv"), ok=False).stderr
    actions = [e["action"] for e in json.loads(cli("audit", MONTH, "--json").stdout)]
    assert actions.count("export") == 3
