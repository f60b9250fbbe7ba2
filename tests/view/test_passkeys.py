"""Passkeys in the view, with a software authenticator: enrolment by a key-signed one-time link, passkey-signed
requests and approvals through the action layer (four eyes), refusals that change nothing, and the audit log
re-verifying every passkey signature offline."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from starlette.testclient import TestClient

from batch.enrolment import make_token
from batch.identity import DEMO_KEYS_DIR, Signed, canonical, load_private_key
from batch.passkeys import Assertion, PasskeyError, challenge_of, check_rp_id
from batch_cli.main import main
from batch_cli.runs import run_job
from batch_view.app import create_app
from batch_view.sources import Sources
from resources.control_store import GENESIS_HASH, _entry_hash, audit, audit_head
from resources.settings import Settings
from tests.cli.test_cli_views import cli
from tests.view.conftest import DAGSTER_URL
from tests.view.softkey import SoftKey, b64, unb64
from tests.view.test_actions import ORIGIN, csrf_of, post

CHANGES = ("request", "approve", "reject", "lock", "release", "passkey_enroll")


def sign_in(client: TestClient, who: str) -> None:
    assert post(client, "/signin", person=who).status_code == 303


def register(client: TestClient, token_text: str, key: SoftKey):
    token = Signed.decode(token_text)
    credential = key.register(challenge_of(canonical(token.body())))
    return post(client, "/passkey/enroll", token=token_text, credential=json.dumps(credential))


def enrol(client: TestClient, who: str) -> SoftKey:
    """`who` signs in and registers a new software passkey through the demo's enrolment link."""
    sign_in(client, who)
    link = post(client, "/passkey/demo-enroll")
    assert link.status_code == 303
    page = client.get(link.headers["location"])
    assert page.status_code == 200 and "data-passkey-enrol" in page.text and "<script>" not in page.text
    key = SoftKey()
    answer = register(client, parse_qs(urlsplit(link.headers["location"]).query)["token"][0], key)
    assert answer.status_code == 200, answer.text
    return key


def signed_parts(client: TestClient, key: SoftKey, **fields: str) -> list[dict]:
    """The actions a change needs, prepared by the view and signed by `key`."""
    ready = post(client, "/passkey/challenge", **fields)
    assert ready.status_code == 200, ready.text
    return [{"body": p["body"], "mac": p["mac"], "extra": p["extra"], "credential": key.assert_(unb64(p["challenge"]))}
            for p in ready.json()["parts"]]


def act(client: TestClient, parts: list[dict], **extra: str):
    return post(client, "/passkey/act", parts=json.dumps(parts), **extra)


def changes(client: TestClient, month: str) -> list:
    """Every change recorded: the audit's change entries, the requests, the month's lock, the passkeys' counters."""
    entries = [(e["action"], e["actor"], e["at"]) for e in client.store.audit_entries() if e["action"] in CHANGES]
    requests = [(r.id, r.status, r.decided_by) for r in client.store.requests()]
    lock = client.store.lock_info(month)
    counters = [(k["credential_id"], k["sign_count"]) for k in client.store.passkeys()]
    return [entries, requests, lock and lock.to_dict(), counters, len(client.submitted)]


def test_enrolment_is_a_key_signed_one_time_link_and_the_people_page_lists_the_passkey(view):
    link = json.loads(cli("passkey", "enroll", "--actor", "bob", "--url", ORIGIN, "--json").output)["link"]
    token_text = parse_qs(urlsplit(link).query)["token"][0]
    assert view.get(urlsplit(link).path + "?" + urlsplit(link).query).status_code == 200
    key = SoftKey()
    assert register(view, token_text, key).status_code == 200
    people = view.get("/people.json").json()
    assert [(k["person"], k["credential_id"], k["rp_id"], k["origin"]) for k in people["passkeys"]] == [
        ("bob", key.id, "localhost", ORIGIN)]
    entry = view.store.audit_entries()[-1]
    assert (entry["action"], entry["actor"], entry["details"]["credential_id"]) == ("passkey_enroll", "bob", key.id)
    again = register(view, token_text, SoftKey())  # the link works once
    assert again.status_code == 403 and "used before" in again.json()["error"]
    stale = make_token(load_private_key("bob", str(DEMO_KEYS_DIR / "bob.key")), "bob",
                       now=datetime.now(UTC) - timedelta(minutes=11)).encode()
    assert register(view, stale, SoftKey()).status_code == 403
    forged = Signed.from_dict({**Signed.decode(token_text).body(), "nonce": "f" * 32,
                               "signature": Signed.decode(token_text).signature}).encode()
    assert register(view, forged, SoftKey()).status_code == 403
    assert len(view.get("/people.json").json()["passkeys"]) == 1


def test_alice_requests_finalize_bob_approves_with_his_passkey_and_alice_cannot(view, landed):
    alice, bob = enrol(view, "alice"), enrol(view, "bob")
    sign_in(view, "alice")
    month_page = view.get(f"/month/{landed.month}").text
    assert 'id="finalize-form"' in month_page
    filed = act(view, signed_parts(view, alice, action="finalize", month=landed.month, version="2", note="good"))
    assert filed.status_code == 200, filed.text
    request = view.store.requests(landed.month)[0]
    assert (request.kind, request.version, request.requested_by, request.status) == ("finalize", 2, "alice", "pending")

    approvals = view.get("/approvals").text
    assert "You filed this request" in approvals and "Approve with my passkey" not in approvals
    before = changes(view, landed.month)
    forged = act(view, signed_parts(view, alice, action="approve", request_id=request.id))
    assert forged.status_code == 400 and "may not approve it: four eyes" in forged.json()["error"]
    assert changes(view, landed.month) == before and not view.submitted

    sign_in(view, "bob")
    assert "Approve with my passkey" in view.get("/approvals").text
    approved = act(view, signed_parts(view, bob, action="approve", request_id=request.id))
    assert approved.status_code == 200, approved.text
    decided = view.store.request(request.id)
    assert (decided.status, decided.decided_by) == ("approved", "bob")
    job, tags, run_config = view.submitted[0]
    assert (job, tags["dagster/partition"], tags["batch_admin/actor"]) == ("finalize_job", landed.month, "bob")
    assert run_config == {"ops": {"final_allocation": {"config": {"request_id": request.id}}}}
    shown = view.get(f"/month/{landed.month}.json").json()["requests"]
    assert [(r["status"], r["decided_by"]) for r in shown] == [("approved", "bob")]
    entry = [e for e in view.store.audit_entries() if e["action"] == "approve"][-1]
    assert json.loads(entry["signed_json"])["signature"].startswith("webauthn:")
    assert view.store.verify_audit().ok


def test_reject_and_release_with_a_passkey(view, landed):
    alice, bob = enrol(view, "alice"), enrol(view, "bob")
    sign_in(view, "alice")
    assert act(view, signed_parts(view, alice, action="lock", month=landed.month, admins="alice")).status_code == 200
    assert view.store.lock_info(landed.month).holder == "alice"
    assert act(view, signed_parts(view, alice, action="release", month=landed.month)).status_code == 200
    assert view.store.lock_info(landed.month) is None
    act(view, signed_parts(view, alice, action="finalize", month=landed.month, version="1", note="v1"))
    request = view.store.requests(landed.month)[0]
    sign_in(view, "bob")
    rejected = act(view, signed_parts(view, bob, action="reject", request_id=request.id, reason="not v1"))
    assert rejected.status_code == 200, rejected.text
    assert (view.store.request(request.id).status, view.store.request(request.id).decision_text) == ("rejected", "not v1")


NOT_SIGNED = "is not signed with alice's key"
WHY = {"replayed assertion": "was used before (a replay)", "assertion for another action": NOT_SIGNED,
       "changed clientDataJSON": NOT_SIGNED, "no csrf token": "CSRF token is missing",
       "foreign origin": "not from http://evil.example", "session cookie alone": "A passkey signature is missing",
       "bob's credential for alice": NOT_SIGNED, "counter going back": "not above 1: a cloned authenticator",
       "user not verified": NOT_SIGNED, "body changed after the challenge": "not prepared by this view"}
ATTACKS = list(WHY)


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_passkey_change_that_does_not_stand_is_refused_and_changes_nothing(view, landed, attack):
    alice, bob = enrol(view, "alice"), enrol(view, "bob")
    sign_in(view, "alice")
    parts = signed_parts(view, alice, action="lock", month=landed.month, admins="alice")
    extra: dict[str, str] = {}
    if attack == "replayed assertion":
        assert act(view, parts).status_code == 200
    elif attack == "assertion for another action":
        other = signed_parts(view, alice, action="release", month=landed.month)
        parts[0]["credential"] = other[0]["credential"]
    elif attack == "changed clientDataJSON":
        response = parts[0]["credential"]["response"]
        client = json.loads(unb64(response["clientDataJSON"]))
        response["clientDataJSON"] = b64(json.dumps({**client, "origin": "http://localhost:3000 "}).encode())
    elif attack == "no csrf token":
        view.csrf = ""
    elif attack == "foreign origin":
        extra = {"origin": "http://evil.example"}
    elif attack == "session cookie alone":
        parts[0].pop("credential")
    elif attack == "bob's credential for alice":
        ready = post(view, "/passkey/challenge", action="lock", month=landed.month, admins="alice").json()["parts"][0]
        parts = [{**ready, "credential": bob.assert_(unb64(ready["challenge"]))}]
    elif attack == "counter going back":
        assert act(view, parts).status_code == 200  # the store holds counter 1 now
        alice.counter = 1  # a clone of the authenticator, or an old assertion's counter
        parts = signed_parts(view, alice, action="release", month=landed.month)
    elif attack == "user not verified":
        ready = post(view, "/passkey/challenge", action="lock", month=landed.month, admins="alice").json()["parts"][0]
        parts = [{**ready, "credential": alice.assert_(unb64(ready["challenge"]), flags=0x01)}]
    else:
        body = json.loads(unb64(parts[0]["body"]))
        parts[0]["body"] = b64(canonical({**body, "details": {"admins": ["alice", "carol"], "ttl_hours": 8.0}}))
    before = changes(view, landed.month)
    refused = post(view, "/passkey/act", parts=json.dumps(parts), **extra) if extra else act(view, parts)
    assert refused.status_code in (400, 403) and refused.json()["error"]
    assert WHY[attack] in refused.json()["error"]
    assert changes(view, landed.month) == before


def test_audit_verify_rechecks_passkey_signatures_offline_and_a_tampered_assertion_fails(view, landed):
    alice = enrol(view, "alice")
    sign_in(view, "alice")
    act(view, signed_parts(view, alice, action="lock", month=landed.month, admins="alice"))
    assert view.store.verify_audit().ok
    # Someone with the database rewrites the stored assertion and re-chains every hash after it.
    with view.store.engine.begin() as conn:
        rows = conn.execute(sa.select(audit).order_by(audit.c.id)).mappings().all()
        prev = GENESIS_HASH
        for row in rows:
            signed_json = row["signed_json"]
            if row["action"] == "lock":
                data = json.loads(signed_json)
                kept = Assertion.parse(data["signature"])
                data["signature"] = replace(kept, signature=kept.signature[:-1] + bytes([kept.signature[-1] ^ 1])).text()
                signed_json = json.dumps(data, sort_keys=True, separators=(",", ":"))
            digest = _entry_hash(prev, row["month"], row["at"], row["actor"], row["action"], row["details_json"],
                                 signed_json)
            conn.execute(audit.update().where(audit.c.id == row["id"]).values(
                signed_json=signed_json, prev_hash=prev, hash=digest))
            prev = digest
        conn.execute(audit_head.update().values(last_hash=prev))
    result = view.store.verify_audit()
    assert not result.ok
    assert any("(lock) is not signed with alice's key" in problem for problem in result.problems)
    refused = CliRunner().invoke(main, ["audit", "--verify"], catch_exceptions=False)
    assert refused.exit_code != 0 and "is not signed with alice's key" in refused.output + refused.stderr


@pytest.mark.parametrize("rp_id", ["127.0.0.1", "::1", "[::1]", "http://localhost", "localhost:3000", ""])
def test_a_relying_party_id_is_a_domain_never_an_ip_address(rp_id):
    with pytest.raises(PasskeyError):
        check_rp_id(rp_id)
    assert check_rp_id("admin.example.org") == "admin.example.org"


def test_passkeys_are_refused_on_a_view_opened_at_an_ip_address_or_another_origin(landed, monkeypatch):
    with TestClient(create_app(Sources.open(Settings.from_env(), DAGSTER_URL)), base_url="http://127.0.0.1:3000") as ip:
        ip.csrf = csrf_of(ip.get("/").text)  # type: ignore[attr-defined]
        post(ip, "/signin", person="alice", origin="http://127.0.0.1:3000")
        refused = post(ip, "/passkey/challenge", origin="http://127.0.0.1:3000", action="release", month=landed.month)
        assert refused.status_code == 403 and "Passkeys work at http://localhost:PORT" in refused.json()["error"]
    monkeypatch.setenv("BATCH_ADMIN_ORIGIN", "https://admin.example.org")
    with TestClient(create_app(Sources.open(Settings.from_env(), DAGSTER_URL)), base_url=ORIGIN) as other:
        other.csrf = csrf_of(other.get("/").text)  # type: ignore[attr-defined]
        post(other, "/signin", person="alice")
        refused = post(other, "/passkey/challenge", action="release", month=landed.month)
        assert refused.status_code == 403 and "Passkeys work at https://admin.example.org" in refused.json()["error"]


@pytest.mark.slow
def test_the_run_ticket_bobs_passkey_signed_carries_out_the_finalize(view, landed):
    alice, bob = enrol(view, "alice"), enrol(view, "bob")
    sign_in(view, "alice")
    act(view, signed_parts(view, alice, action="finalize", month=landed.month, version="2", note="good"))
    sign_in(view, "bob")
    request = view.store.requests(landed.month)[0]
    assert act(view, signed_parts(view, bob, action="approve", request_id=request.id)).status_code == 200
    job, tags, run_config = view.submitted[0]
    outcome = run_job(job, landed.month, tags, run_config)  # the run the Dagster queue would start
    assert outcome.success, outcome.error
    month = view.get(f"/month/{landed.month}.json").json()
    assert (month["final"]["version"], month["final"]["approved_by"]) == (2, "bob")
    assert view.store.verify_audit().ok  # the ticket's passkey signature too
