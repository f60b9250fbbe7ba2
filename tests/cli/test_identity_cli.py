"""Keys, run tickets and the roles file through the `batch-admin` CLI (no runs: fast)."""

from __future__ import annotations

import json
import stat

import pandas as pd
import pytest
from click.testing import CliRunner

from batch.identity import DEMO_KEYS_DIR, KEY_VAR, Signed
from batch_cli.main import main
from resources.settings import DEFAULT_ROLES_FILE

MONTH = "2026-12"


def cli(*args: str, ok: bool = True, env: dict[str, str] | None = None):
    result = CliRunner(env=env).invoke(main, list(args), catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output + result.stderr
    if not ok:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result


def test_keygen_writes_a_private_key_for_its_owner_only_and_never_overwrites_it(home, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    made = cli("keygen", "dave")
    path = tmp_path / "user" / ".config" / "batch-admin" / "dave.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert made.stdout.strip().startswith("dave: ed25519:")
    before = path.read_bytes()
    assert "exists already" in cli("keygen", "dave", ok=False).stderr
    assert path.read_bytes() == before
    assert "A name is 1 to 64" in cli("keygen", "../evil", ok=False).stderr


def test_a_ticket_is_signed_by_its_actor_for_the_months_and_job_named(home):
    made = json.loads(cli("ticket", MONTH, "2026-11", "--job", "execute_job", "--actor", "alice", "--json").stdout)
    ticket = Signed.decode(made["value"])
    assert (ticket.actor, ticket.details["job"], ticket.details["months"]) == ("alice", "execute_job",
                                                                              ["2026-11", MONTH])
    assert made["tag"] == "batch_admin/ticket"
    assert "not an admin" in cli("ticket", MONTH, "--job", "execute_job", "--actor", "bob", ok=False).stderr
    human = cli("ticket", MONTH, "--job", "execute_job", "--actor", "alice").stdout
    assert human.strip().startswith("batch_admin/ticket=")


def test_a_changed_roles_file_waits_for_an_admin_and_an_approver(home, tmp_path, monkeypatch):
    roles = tmp_path / "roles.yaml"
    roles.write_text(DEFAULT_ROLES_FILE.read_text())
    monkeypatch.setenv("BATCH_ADMIN_ROLES", str(roles))
    alice = {KEY_VAR: str(DEMO_KEYS_DIR / "alice.key")}
    bob = {KEY_VAR: str(DEMO_KEYS_DIR / "bob.key")}
    cli("params", MONTH, "--actor", "alice", "--set", "seed=1", env=alice)  # the first file is accepted
    dave_key = tmp_path / "dave.key"
    line = cli("keygen", "dave", "--out", str(dave_key)).stdout.strip()
    roles.write_text(roles.read_text().replace("admins: [alice, carol]", "admins: [alice, carol, dave]")
                     + f"  {line}\n")
    dave = {KEY_VAR: str(dave_key)}
    assert "differs from the roles accepted" in cli("params", MONTH, "--actor", "dave", "--set", "seed=2",
                                                    ok=False, env=dave).stderr
    filed = json.loads(cli("accept-roles", "--actor", "alice", "--note", "dave joins", "--json", env=alice).stdout)
    assert "may not approve it" in cli("approve", filed["id"], "--actor", "alice", ok=False, env=alice).stderr
    assert "accepted" in cli("approve", filed["id"], "--actor", "bob", env=bob).stdout
    cli("params", MONTH, "--actor", "dave", "--set", "seed=2", env=dave)
    audit = json.loads(cli("audit", MONTH, "--json").stdout)
    assert [e["actor"] for e in audit if e["action"] == "params"] == ["alice", "dave"]
    assert "intact" in cli("audit", "--verify").stdout


@pytest.mark.parametrize("args", [
    ("lock", MONTH, "--actor", "alice", "--admins", "alice"),
    ("params", MONTH, "--actor", "alice", "--set", "seed=3"),
    ("adjust", MONTH, "--actor", "alice", "--exclude", "FIRST_REQUEST", "--note", "x"),
])
def test_an_action_signed_with_another_persons_key_is_refused_and_alerted(home, args):
    carol = {KEY_VAR: str(DEMO_KEYS_DIR / "carol.key")}
    cli("demo-data", MONTH, "--requests", "20", "--resources", "3")
    first = str(pd.read_parquet(home / "landing" / MONTH / "requests.parquet")["request_id"].iloc[0])
    args = tuple(first if a == "FIRST_REQUEST" else a for a in args)
    refused = cli(*args, ok=False, env=carol)
    assert "not signed with alice's key" in refused.stderr
    alerts = json.loads(cli("alerts", "--json").stdout)
    assert [a["rule"] for a in alerts] == ["refused_action"]
    assert json.loads(cli("status", MONTH, "--json").stdout)["params"] == {}


@pytest.mark.parametrize("target", ["key", "key_folder", "roles"])
def test_an_export_never_overwrites_a_key_or_the_roles_file(home, tmp_path, monkeypatch, target):
    user = tmp_path / "user"
    monkeypatch.setenv("HOME", str(user))
    cli("keygen", "alice")
    key_file = user / ".config" / "batch-admin" / "alice.key"
    roles = tmp_path / "roles.yaml"
    roles.write_text(DEFAULT_ROLES_FILE.read_text())
    monkeypatch.setenv("BATCH_ADMIN_ROLES", str(roles))
    out = {"key": key_file, "key_folder": key_file.parent / "new.csv", "roles": roles}[target]
    before = key_file.read_bytes(), roles.read_bytes()
    refused = cli("report", MONTH, "--out", str(out), "--force", ok=False)
    assert "which the product keeps" in refused.stderr
    assert (key_file.read_bytes(), roles.read_bytes()) == before
