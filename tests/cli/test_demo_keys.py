"""The shipped demo keys act on the embedded default only (issue 25, break 4): a control store on
PostgreSQL, whichever variable names it, never adopts, reads or accepts them."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from batch.identity import DEMO_KEYS_DIR, DEMO_PUBLIC_KEYS, KEY_VAR, public_key_text, sign
from batch.roles import RoleError, Roles
from batch_cli.main import close_stores, main
from resources.control_store import ControlStore
from resources.settings import DEFAULT_ROLES_FILE
from tests.signing import demo_key, install_keys, open_store, roles_file, signed

MONTH = "2026-12"
REFUSAL = "holds the shipped demo public key of"


def cli(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    close_stores()
    assert (result.exit_code == 0) == ok, result.output + result.stderr
    if not ok:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result


def test_the_demo_public_keys_known_to_the_code_are_those_of_the_shipped_files():
    shipped = {public_key_text(demo_key(path.stem).public_key()) for path in DEMO_KEYS_DIR.glob("*.key")}
    assert shipped == DEMO_PUBLIC_KEYS == set(Roles.load(DEFAULT_ROLES_FILE).keys.values())


@pytest.mark.postgres
def test_a_postgres_control_store_never_adopts_the_shipped_demo_roles(postgres_url):
    store = ControlStore(postgres_url, migrate=True, roles_file=DEFAULT_ROLES_FILE)
    with pytest.raises(RoleError, match=f"{REFUSAL} alice, bob, carol, dana.*`batch-admin keygen NAME`"):
        store.set_params(sign(demo_key("alice"), "alice", "params", MONTH, {"changes": {"seed": 1}}))
    assert store.audit_entries() == []  # nothing adopted, nothing recorded
    store.dispose()


@pytest.mark.postgres
def test_a_roles_change_that_brings_a_demo_key_is_refused_on_postgres(postgres_url, tmp_path):
    changed = tmp_path / "roles.yaml"
    changed.write_text(roles_file().read_text())
    open_store(postgres_url).dispose()  # the own roles accepted first
    alice_demo = next(iter(Roles.load(DEFAULT_ROLES_FILE).public_keys("alice")))
    changed.write_text(changed.read_text().replace("admins: [alice, carol]", "admins: [alice, carol, eve]")
                       + f"  eve: {alice_demo}\n")
    store = ControlStore(postgres_url, roles_file=changed)
    with pytest.raises(RoleError, match=f"{REFUSAL} eve"):
        store.file_request(signed("alice", "request", None, {"kind": "roles", "text": "eve joins", "binding": {
            "checksum": Roles.load(changed).checksum, "source": str(changed)}}))
    store.dispose()


@pytest.mark.postgres
def test_with_only_the_control_url_on_postgres_the_cli_finds_no_demo_key(home, postgres_url, monkeypatch, tmp_path):
    monkeypatch.setenv("BATCH_ADMIN_CONTROL_URL", postgres_url)
    monkeypatch.setenv("HOME", str(tmp_path / "nobody"))
    cli("migrate")
    refused = cli("params", MONTH, "--actor", "alice", "--set", "seed=1", ok=False)
    assert REFUSAL in refused.stderr and "batch-admin keygen" in refused.stderr
    # With a roles file of the people's own keys, alice still has no key: the demo folder is not read.
    monkeypatch.setenv("BATCH_ADMIN_ROLES", str(roles_file()))
    refused = cli("params", MONTH, "--actor", "alice", "--set", "seed=1", ok=False)
    assert "No private key for alice" in refused.stderr


@pytest.mark.postgres
def test_a_demo_key_named_by_batch_admin_key_is_refused_on_postgres(home, postgres_url, monkeypatch, tmp_path):
    monkeypatch.delenv("BATCH_ADMIN_CONTROL_URL")
    monkeypatch.setenv("BATCH_ADMIN_POSTGRES_URL", postgres_url)
    for name, value in install_keys(tmp_path / "people").items():
        monkeypatch.setenv(name, value)
    cli("migrate")
    cli("params", MONTH, "--actor", "alice", "--set", "seed=1")  # her own key, from ~/.config/batch-admin
    monkeypatch.setenv(KEY_VAR, str(DEMO_KEYS_DIR / "alice.key"))
    refused = cli("params", MONTH, "--actor", "alice", "--set", "seed=2", ok=False)
    assert "is a shipped demo key" in refused.stderr and "batch-admin keygen alice" in refused.stderr


def test_the_embedded_default_still_acts_with_the_demo_keys(home):
    cli("params", MONTH, "--actor", "alice", "--set", "seed=1")
