"""The action layer against the real control store (SQLite; PostgreSQL where marked): each action's
rules in one place, refusals that change nothing, and the job that follows an approval."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from batch import actions
from batch.approvals import APPROVED, PENDING
from batch.errors import ControlError
from batch.identity import IdentityError, Signed, make_ticket
from batch.lifecycle import EXECUTE_JOB, FINALIZE_JOB, UNLOCK_JOB
from batch.roles import ACTOR_TAG, NOTE_TAG, RoleError, Roles
from resources.control_store import ControlStore
from tests.signing import finalize_binding_of, finalize_in_store, key, open_store, roles_file, signed

MONTH = "2026-12"
VIEW = "https://batch.example.org"


@pytest.fixture
def store(tmp_path) -> Iterator[ControlStore]:
    s = open_store(f"sqlite:///{tmp_path / 'control.db'}")
    yield s
    s.dispose()


def _version(store: ControlStore, version: int = 1) -> None:
    store.record_version(MONTH, version, "alice", None if version == 1 else "why", f"run-{version}",
                         f"/exports/month={MONTH}/version={version}", {}, {"requests": 10}, "f" * 64)


def _finalize_request(store: ControlStore, by: str = "alice"):
    details = {"kind": "finalize", "text": "reviewed", "binding": finalize_binding_of(store, MONTH, 1)}
    return actions.file_request(store, signed(by, "request", MONTH, details), VIEW).request


def _approval(store: ControlStore, request_id: str, by: str = "bob", with_ticket: bool = True):
    request = store.request(request_id)
    job = actions.ticket_job(request)
    ticket = make_ticket(key(by), by, job, [str(request.month)], 15, request_id=request.id) \
        if job and with_ticket else None
    return signed(by, "approve", request.month, actions.approval_details(request, ticket)), ticket


def _audit_count(store: ControlStore) -> int:
    return len(store.audit_entries())


def test_lock_and_release_say_what_happened_and_are_audited(store):
    outcome = actions.lock(store, signed("alice", "lock", MONTH, {"admins": ["carol"], "ttl_hours": 2}))
    assert (outcome.action, outcome.actor, outcome.month, outcome.follows) == ("lock", "alice", MONTH, None)
    assert outcome.lock is not None and sorted(outcome.lock.admins) == ["alice", "carol"]
    assert outcome.message.startswith(f"{MONTH} locked by alice for alice, carol until ")
    released = actions.release(store, signed("alice", "release", MONTH))
    assert released.message == f"{MONTH}: temporary lock released."
    assert [e["action"] for e in store.audit_entries(MONTH)][-2:] == ["lock", "release"]


def test_someone_elses_lock_and_wrong_roles_change_nothing(store):
    actions.lock(store, signed("alice", "lock", MONTH, {"admins": [], "ttl_hours": 2}))
    before = _audit_count(store)
    with pytest.raises(ControlError, match="already locked by alice"):
        actions.lock(store, signed("carol", "lock", MONTH, {"admins": [], "ttl_hours": 2}))
    with pytest.raises(ControlError, match="Only alice, who holds the lock"):
        actions.release(store, signed("carol", "release", MONTH))
    with pytest.raises(RoleError, match="bob is not an admin .* may not lock 2026-12"):
        actions.lock(store, signed("bob", "lock", MONTH, {"admins": [], "ttl_hours": 2}))
    with pytest.raises(RoleError, match="Unknown identity 'mallory'"):
        actions.release(store, Signed(**{**signed("alice", "release", MONTH).to_dict(), "actor": "mallory"}))
    assert _audit_count(store) == before
    assert store.lock_info(MONTH).holder == "alice"


def test_a_signature_for_one_action_does_not_do_another(store):
    with pytest.raises(IdentityError, match="is for release, not lock"):
        actions.lock(store, signed("alice", "release", MONTH))
    with pytest.raises(IdentityError, match="unsigned lock"):
        actions.lock(store, {"actor": "alice"})  # type: ignore[arg-type]
    assert store.lock_info(MONTH) is None


def test_approving_a_finalize_request_says_finalize_job_follows_with_the_ticket_it_issued(store):
    _version(store)
    request = _finalize_request(store)
    assert request.status == PENDING and actions.ticket_job(request) == FINALIZE_JOB
    approval, ticket = _approval(store, request.id)
    outcome = actions.approve(store, approval, ticket=ticket)
    assert outcome.request.status == APPROVED and outcome.request.decided_by == "bob"
    follows = outcome.follows
    assert (follows.job, follows.month, follows.ticket, follows.actor) == (FINALIZE_JOB, MONTH, ticket, "bob")
    assert follows.run_config == {"ops": {"final_allocation": {"config": {"request_id": request.id}}}}
    assert follows.tags()[ACTOR_TAG] == "bob"
    assert outcome.message == f"{MONTH} finalized: version 1, requested by alice, approved by bob"
    assert store.audit_entries(MONTH)[-1]["details"]["ticket_nonce"] == ticket.nonce


def test_four_eyes_and_a_missing_or_foreign_ticket_refuse_before_anything_is_decided(store):
    _version(store)
    request = _finalize_request(store)
    before = _audit_count(store)
    own, own_ticket = _approval(store, request.id, by="alice")
    with pytest.raises(RoleError, match="alice filed .* and may not approve it"):
        actions.approve(store, own, ticket=own_ticket)
    carol, carol_ticket = _approval(store, request.id, by="carol")
    with pytest.raises(RoleError, match="carol does not hold the approver role"):
        actions.approve(store, carol, ticket=carol_ticket)
    bob, _ = _approval(store, request.id, with_ticket=False)
    with pytest.raises(ControlError, match="issues the run ticket of finalize_job"):
        actions.approve(store, bob, ticket=None)
    bob, bob_ticket = _approval(store, request.id)
    dana_ticket = make_ticket(key("dana"), "dana", FINALIZE_JOB, [MONTH], 15, request_id=request.id)
    with pytest.raises(IdentityError, match="is not the one bob signed"):
        actions.approve(store, bob, ticket=dana_ticket)
    assert store.request(request.id).status == PENDING
    assert _audit_count(store) == before


def test_unlock_is_carried_out_by_unlock_job_and_rejection_needs_a_reason(store):
    _version(store)
    finalize_in_store(store, MONTH, 1)
    with pytest.raises(ControlError, match="is finalized"):
        actions.lock(store, signed("alice", "lock", MONTH, {"admins": [], "ttl_hours": 2}))
    filed = actions.file_request(store, signed("carol", "request", MONTH,
                                               actions.unlock_details(store, MONTH, "wrong capacity")), VIEW)
    assert filed.message.startswith(f"Request {filed.request.id} filed: unlock {MONTH}, by carol.")
    with pytest.raises(ControlError, match="non-empty --reason"):
        actions.reject(store, signed("dana", "reject", MONTH, {"request_id": filed.request.id, "reason": " "}))
    approval, ticket = _approval(store, filed.request.id, by="dana")
    outcome = actions.approve(store, approval, ticket=ticket)
    assert (outcome.follows.job, outcome.follows.month) == (UNLOCK_JOB, None)
    assert outcome.message.startswith(f"{MONTH} unlocked (requested by carol, approved by dana)")


def test_a_finalized_month_refuses_a_finalize_request_and_a_run(store):
    _version(store)
    finalize_in_store(store, MONTH, 1)
    before = _audit_count(store)
    with pytest.raises(ControlError, match=f"Month {MONTH} is finalized"):
        _finalize_request(store, by="carol")
    ticket = make_ticket(key("alice"), "alice", EXECUTE_JOB, [MONTH], 15)
    with pytest.raises(ControlError, match=f"Month {MONTH} is finalized"):
        actions.admit_run(store, ticket, month=MONTH, note="again")
    assert _audit_count(store) == before


def test_run_admission_checks_role_inputs_locks_and_the_note(store, tmp_path):
    ticket = make_ticket(key("alice"), "alice", EXECUTE_JOB, [MONTH], 15)
    with pytest.raises(ControlError, match=f"No inputs have landed for {MONTH}"):
        actions.admit_run(store, ticket, month=MONTH, home=tmp_path)
    outcome = actions.admit_run(store, ticket, month=MONTH)
    assert (outcome.follows.job, outcome.follows.month, outcome.follows.ticket) == (EXECUTE_JOB, MONTH, ticket)
    _version(store)
    with pytest.raises(ControlError, match="from version 2 on a run needs a change note"):
        actions.admit_run(store, ticket, month=MONTH, note="  ")
    assert actions.admit_run(store, ticket, month=MONTH, note="why").follows.tags()[NOTE_TAG] == "why"
    bob = make_ticket(key("bob"), "bob", EXECUTE_JOB, [MONTH], 15)
    with pytest.raises(RoleError, match="bob is not an admin .* may not run 2026-12"):
        actions.admit_run(store, bob, month=MONTH, note="why")
    with pytest.raises(IdentityError, match="not for execute_job of 2027-01"):
        actions.admit_run(store, ticket, month="2027-01")
    actions.lock(store, signed("carol", "lock", MONTH, {"admins": [], "ttl_hours": 2}))
    with pytest.raises(ControlError, match="alice may not run it"):
        actions.admit_run(store, ticket, month=MONTH, note="why")


def test_a_new_run_asks_for_the_inputs_before_the_store_and_the_role_before_the_key(store, tmp_path):
    opened, signers = [], []

    def open_store_() -> ControlStore:
        opened.append(1)
        return store

    def sign(who: str) -> Signed:
        signers.append(who)
        return make_ticket(key(who), who, EXECUTE_JOB, [MONTH], 15)

    with pytest.raises(ControlError, match=f"No inputs have landed for {MONTH}"):
        actions.admit_new_run(open_store_, EXECUTE_JOB, "alice", MONTH, sign, home=tmp_path)
    assert opened == [] and signers == []
    with pytest.raises(RoleError, match="bob is not an admin"):
        actions.admit_new_run(open_store_, EXECUTE_JOB, "bob", MONTH, sign)
    assert signers == []  # no key is loaded for a person without the role
    outcome = actions.admit_new_run(open_store_, EXECUTE_JOB, "alice", MONTH, sign, note=" why ")
    assert signers == ["alice"] and (outcome.follows.job, outcome.follows.actor, outcome.follows.note) == (
        EXECUTE_JOB, "alice", "why")
    actions.lock(store, signed("carol", "lock", MONTH, {"admins": [], "ttl_hours": 2}))
    with pytest.raises(ControlError, match="alice may not run it"):
        actions.admit_new_run(open_store_, EXECUTE_JOB, "alice", MONTH, sign)


def test_an_export_is_audited_by_anyone_in_the_roles_only(store):
    details = {"rows": "3", "path": "/tmp/x.csv", "filters": {"service": None}}
    outcome = actions.record_export(store, signed("bob", "export", MONTH, details))
    assert outcome.message == "Wrote 3 rows to /tmp/x.csv"
    assert store.audit_entries(MONTH)[-1]["action"] == "export"
    with pytest.raises(RoleError, match="Unknown identity 'mallory'"):
        actions.may(store, "export", "mallory", MONTH)


@pytest.mark.postgres
def test_lock_and_four_eyes_on_postgresql(postgres_url):
    store = open_store(postgres_url)
    try:
        _version(store)
        request = _finalize_request(store)
        own, own_ticket = _approval(store, request.id, by="alice")
        with pytest.raises(RoleError, match="four eyes"):
            actions.approve(store, own, ticket=own_ticket)
        approval, ticket = _approval(store, request.id)
        assert actions.approve(store, approval, ticket=ticket).follows.job == FINALIZE_JOB
        with pytest.raises(ControlError, match="only a pending request"):
            actions.approve(store, _approval(store, request.id, by="dana")[0], ticket=ticket,
                            now=datetime.now(UTC) + timedelta(seconds=1))
    finally:
        store.dispose()


def test_a_roles_request_names_no_month_and_is_checked_against_the_roles_file(store):
    proposed = Roles.load(roles_file())
    with pytest.raises(ControlError, match="is the accepted one; nothing to accept"):
        actions.file_request(store, signed("alice", "request", None, actions.roles_details(proposed, "new key")), VIEW)
    with pytest.raises(RoleError, match="bob is not an admin .* may not request a change of the roles"):
        actions.file_request(store, signed("bob", "request", None, actions.roles_details(proposed, "new key")), VIEW)
    assert store.requests() == []


def test_a_new_request_is_announced_to_the_approvers_with_the_link_to_its_approval_page(store):
    _version(store)
    request = _finalize_request(store)
    announced = [a for a in store.alerts(MONTH) if a["rule"] == actions.RULE_REQUEST_FILED]
    assert len(announced) == 1, announced
    link = f"{VIEW}/approvals#request-{request.id}"
    assert announced[0]["details"]["approval_url"] == link and link in announced[0]["message"]
    assert announced[0]["message"].startswith(f"finalize {MONTH} version 1 by alice awaits another person")
    assert announced[0]["severity"] == "info" and announced[0]["delivered_at"] is None  # the outbox delivers it
    # A refused request announces nothing.
    with pytest.raises(RoleError):
        actions.file_request(store, signed("bob", "request", MONTH, {"kind": "finalize", "text": "x",
                                                                   "binding": finalize_binding_of(store, MONTH, 1)}), VIEW)
    assert len([a for a in store.alerts(MONTH) if a["rule"] == actions.RULE_REQUEST_FILED]) == 1
