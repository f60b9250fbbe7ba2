"""Passkeys beyond approvals, with a software authenticator: a passkey sign-in opens a session for reading only;
runs, parameters, adjustments and exports made in the view are passkey assertions over the same signed actions
the CLI signs, verified by the action layer and re-verified offline by the audit log."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from batch.identity import TICKET_TAG, Signed, check_signature
from resources.control_store import passkey_store
from tests.view.softkey import SoftKey, unb64
from tests.view.test_actions import csrf_of, post, replace_cookie
from tests.view.test_passkeys import act, changes, enrol, sign_in, signed_parts

SESSION = "batch_admin_session"


def sign_in_with(client, key: SoftKey, back: str = "/"):
    """The passkey sign-in: a challenge from the view, the authenticator's assertion, the session."""
    ready = post(client, "/passkey/signin-challenge")
    assert ready.status_code == 200, ready.text
    part = ready.json()["parts"][0]
    parts = [{**part, "credential": key.assert_(unb64(part["challenge"]))}]
    return post(client, "/passkey/signin", parts=json.dumps(parts), back=back), parts


def webauthn_entries(client, action: str) -> list[dict]:
    return [e for e in client.store.audit_entries() if e["action"] == action
            and json.loads(e["signed_json"])["signature"].startswith("webauthn:")]


def test_a_passkey_sign_in_opens_a_session_for_reading_only(view, landed):
    alice = enrol(view, "alice")
    replace_cookie(view, SESSION, None)
    answer, parts = sign_in_with(view, alice, back=f"/month/{landed.month}")
    assert answer.status_code == 200 and answer.json()["redirect"] == f"/month/{landed.month}"
    cookie = answer.headers["set-cookie"]
    assert SESSION in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = view.get(f"/month/{landed.month}").text
    assert "signed in as <b>alice</b>" in page and 'id="run-form" data-passkey' in page

    before = changes(view, landed.month)
    alone = post(view, f"/month/{landed.month}/lock", admins="alice")  # the demo's server-signed path
    assert alone.status_code == 403 and "alice has a passkey" in alone.text
    no_assertion = post(view, "/passkey/act", parts=json.dumps([{k: v for k, v in parts[0].items()
                                                                 if k != "credential"}]))
    assert no_assertion.status_code == 403
    assert changes(view, landed.month) == before and view.store.lock_info(landed.month) is None

    replace_cookie(view, SESSION, None)
    replayed = post(view, "/passkey/signin", parts=json.dumps(parts))
    assert replayed.status_code == 403 and "used before" in replayed.json()["error"]
    stranger, _ = sign_in_with(view, SoftKey())
    assert stranger.status_code == 403 and "not registered here" in stranger.json()["error"]
    foreign = post(view, "/passkey/signin-challenge", origin="http://evil.example")
    assert foreign.status_code == 403
    for refused in (replayed, stranger, foreign):
        assert SESSION not in refused.headers.get("set-cookie", "")


def test_parameters_pins_and_a_run_are_passkey_signed_actions_verified_by_the_action_layer(view, landed):
    alice = enrol(view, "alice")
    rows = landed.versions[2]
    placed = rows[rows["resource_id"].notna()]
    request = placed.iloc[0]
    other = placed[(placed["service"] == request.service) & (placed["region"] == request.region)
                   & (placed["resource_id"] != request.resource_id)]["resource_id"].iloc[0]

    month = landed.month
    assert act(view, signed_parts(view, alice, action="params", month=month, param="time_limit_s",
                                  value="1")).status_code == 200
    assert view.store.params(month)["time_limit_s"] == 1
    pinned = act(view, signed_parts(view, alice, action="adjust", month=month, kind="pin",
                                    request=f"{request.request_id}={other}", note="customer asked"))
    assert pinned.status_code == 200, pinned.text
    assert view.store.pins_and_exclusions(month)[0] == {request.request_id: other}

    before = changes(view, month)
    bad = post(view, "/passkey/challenge", action="params", month=month, param="time_limit_s", value="-3")
    assert bad.status_code == 400 and "time_limit_s" in bad.json()["error"]
    no_note = post(view, "/passkey/challenge", action="run", month=month)
    assert no_note.status_code == 400 and "needs a change note" in no_note.json()["error"]
    assert changes(view, month) == before and not view.submitted

    ran = act(view, signed_parts(view, alice, action="run", month=month, note="pinned one for its customer"))
    assert ran.status_code == 200, ran.text
    assert ran.json()["redirect"] == f"/month/{month}"
    job, tags, _config = view.submitted[0]
    ticket = Signed.decode(tags[TICKET_TAG])
    assert (job, tags["dagster/partition"], tags["batch_admin/note"]) == ("execute_job", month,
                                                                           "pinned one for its customer")
    assert (ticket.actor, ticket.details["months"], ticket.signature[:9]) == ("alice", [month], "webauthn:")
    with view.store.read() as conn:
        key_text = passkey_store.credential(conn, alice.id).key_text
    assert check_signature(ticket, [key_text])  # what the run verifies as it claims the ticket

    # Plan: a preview of the month (plan_job), with no note, signed the same way; an unknown job is refused.
    planned = act(view, signed_parts(view, alice, action="run", month=month, job="plan_job"))
    assert planned.status_code == 200, planned.text
    job, tags, _config = view.submitted[1]
    assert (job, Signed.decode(tags[TICKET_TAG]).details["job"]) == ("plan_job", "plan_job")
    unknown = post(view, "/passkey/challenge", action="run", month=month, job="finalize_job")
    assert unknown.status_code == 400 and "execute_job, plan_job, not 'finalize_job'" in unknown.json()["error"]
    assert len(view.submitted) == 2

    assert [e["actor"] for e in webauthn_entries(view, "params") + webauthn_entries(view, "adjust")] == ["alice"] * 2
    assert view.store.verify_audit().ok


def test_an_export_signed_with_a_passkey_is_audited_then_downloaded_once_by_its_person(view, landed):
    alice, _bob = enrol(view, "alice"), enrol(view, "bob")
    view.cookies.clear()  # a fresh browser: its CSRF cookie, no session
    view.csrf = csrf_of(view.get("/").text)
    assert sign_in_with(view, alice)[0].status_code == 200
    parts = signed_parts(view, alice, action="export", month=landed.month, version="2", format="csv",
                         status="unallocated")
    answer = act(view, parts)
    assert answer.status_code == 200, answer.text
    link = answer.json()["redirect"]
    entry = webauthn_entries(view, "export")[-1]
    assert (entry["actor"], entry["details"]["rows"]) == ("alice", "20")
    got = view.get(link)
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    expected = landed.versions[2]
    assert sorted(pd.read_csv(io.StringIO(got.text))["request_id"]) == sorted(
        expected.loc[expected["status"] == "unallocated", "request_id"])
    assert view.get(link).status_code == 404  # once

    unsigned = post(view, "/passkey/challenge", action="export", month=landed.month, version="2", format="csv")
    held = json.loads(unb64(unsigned.json()["parts"][0]["body"]))
    assert held["action"] == "export"
    link = f"/passkey/download/{unsigned.json()['parts'][0]['extra']['download']}"
    assert view.get(link).status_code == 404  # nothing to download before the passkey signed and the audit recorded


@pytest.mark.parametrize("attack", ["replayed assertion", "bob's credential for alice"])
def test_a_parameter_change_without_alices_own_fresh_assertion_changes_nothing(view, landed, attack):
    alice, bob = enrol(view, "alice"), enrol(view, "bob")
    sign_in(view, "alice")
    parts = signed_parts(view, alice, action="params", month=landed.month, param="time_limit_s", value="2")
    if attack == "replayed assertion":
        assert act(view, parts).status_code == 200
    else:
        ready = post(view, "/passkey/challenge", action="params", month=landed.month, param="time_limit_s",
                     value="2").json()["parts"][0]
        parts = [{**ready, "credential": bob.assert_(unb64(ready["challenge"]))}]
    before = changes(view, landed.month) + [view.store.params(landed.month)]
    refused = act(view, parts)
    assert refused.status_code in (400, 403) and refused.json()["error"]
    assert changes(view, landed.month) + [view.store.params(landed.month)] == before


def test_a_run_signed_with_bobs_passkey_in_alices_name_is_refused_before_anything_is_submitted(view, landed):
    alice, bob = enrol(view, "alice"), enrol(view, "bob")
    sign_in(view, "alice")
    ready = post(view, "/passkey/challenge", action="run", month=landed.month, note="again").json()["parts"][0]
    before = changes(view, landed.month)
    refused = act(view, [{**ready, "credential": bob.assert_(unb64(ready["challenge"]))}])
    assert refused.status_code == 403 and "not signed with one of alice's passkeys" in refused.json()["error"]
    assert changes(view, landed.month) == before and not view.submitted
    ran = act(view, [{**ready, "credential": alice.assert_(unb64(ready["challenge"]))}])
    assert ran.status_code == 200, ran.text
    assert len(view.submitted) == 1
