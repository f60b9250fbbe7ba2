"""Four eyes and identities in the control store, on SQLite and on the real PostgreSQL: requests that
only another person's key approves, forged and replayed signatures, run tickets, the accepted roles
file, and an audit log that a database edit cannot rewrite quietly."""

from __future__ import annotations

import json
import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from batch.approvals import APPROVED, DONE, EXPIRED, REJECTED
from batch.errors import ControlError
from batch.identity import IdentityError, Signed, generate_key, load_private_key, make_ticket, sign
from batch.roles import RoleError, Roles
from resources.control_store import ControlStore, _entry_hash
from tests.signing import approve, file_finalize, finalize_in_store, key, open_store, signed
from tests.signing import roles_file as test_roles_file

MONTH = "2026-12"


@pytest.fixture
def store(control_url) -> ControlStore:
    s = open_store(control_url)
    yield s
    s.dispose()


def _version(store: ControlStore, version: int = 1) -> None:
    store.record_version(MONTH, version, "alice", None if version == 1 else "why", f"run-{version}",
                         f"/exports/month={MONTH}/version={version}", {}, {"requests": 10}, "f" * 64)


def _refusals(store: ControlStore) -> list[str]:
    return [a["message"] for a in store.alerts() if a["rule"] == "refused_action"]


def test_alice_alone_cannot_finalize_with_or_without_naming_bob(store):
    _version(store)
    request = file_finalize(store, MONTH, 1, "alice")
    # Without an approval nothing is carried out.
    with pytest.raises(ControlError, match="not an approved finalization"):
        store.complete_finalize(request.id, "run-x")
    # Alice approving her own request: four eyes.
    with pytest.raises(RoleError, match="alice filed .* and may not approve it"):
        approve(store, request.id, "alice")
    # Alice naming bob, signing with her own key: a forgery, refused, audited and alerted.
    with pytest.raises(IdentityError, match="not signed with bob's key"):
        approve(store, request.id, "bob", key_of="alice")
    # Carol is an admin, not an approver.
    with pytest.raises(RoleError, match="carol does not hold the approver role"):
        approve(store, request.id, "carol")
    assert store.request(request.id).status == "pending"
    assert store.month(MONTH)["phase"] != "finalized"
    assert any("in the name of bob is not signed with bob's key" in m for m in _refusals(store))
    assert store.audit_entries(MONTH)[-1]["action"] != "approve"
    approved = approve(store, request.id, "bob")
    assert (approved.status, approved.decided_by) == (APPROVED, "bob")
    store.complete_finalize(request.id, "run-x")
    row = store.month(MONTH)
    assert (row["phase"], row["finalized_by"], row["approved_by"]) == ("finalized", "alice", "bob")
    assert store.request(request.id).status == DONE
    assert store.verify_audit().ok


def test_a_request_approved_after_a_newer_run_is_refused_as_stale(store):
    _version(store)
    request = file_finalize(store, MONTH, 1)
    _version(store, 2)
    with pytest.raises(ControlError, match="new run since"):
        approve(store, request.id, "bob")
    assert store.request(request.id).status == "pending"


def test_a_finalization_is_not_approved_while_a_run_of_the_month_executes(store):
    _version(store)
    request = file_finalize(store, MONTH, 1)
    store.acquire_lease(MONTH, "run-2")
    with pytest.raises(ControlError, match="Run run-2 of 2026-12 is executing; approve after it ends"):
        approve(store, request.id, "bob")
    store.release_lease(MONTH, "run-2")
    assert approve(store, request.id, "bob").status == APPROVED


def test_an_approval_is_bound_to_what_the_approver_was_shown(store):
    _version(store)
    request = file_finalize(store, MONTH, 1)
    shown = {**request.binding_public(), "version": 2}
    with pytest.raises(ControlError, match="not what bob was shown"):
        store.decide_request(signed("bob", "approve", MONTH, {"request_id": request.id, "binding": shown}))


def test_unsigned_stale_replayed_and_misdirected_signatures_are_refused(store):
    action = signed("alice", "params", MONTH, {"changes": {"seed": 1}})
    store.set_params(action)
    with pytest.raises(IdentityError, match="used before"):
        store.set_params(action)  # a replay of the very same signed action
    old = sign(key("alice"), "alice", "params", MONTH, {"changes": {"seed": 2}},
               now=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(IdentityError, match="not recent"):
        store.set_params(old)
    adjustment = signed("alice", "adjust", MONTH, {"changes": {"seed": 3}})
    with pytest.raises(IdentityError, match="is for adjust of 2026-12, not params of 2026-12"):
        store.set_params(adjustment)
    tampered = Signed(**{**action.to_dict(), "details": {"changes": {"seed": 99}}, "nonce": "n" * 32})
    with pytest.raises(IdentityError, match="not signed with alice's key"):
        store.set_params(tampered)
    assert store.params(MONTH) == {"seed": 1}
    assert len(_refusals(store)) == 4


def test_a_rejected_request_is_closed_and_alerted(store):
    _version(store)
    request = file_finalize(store, MONTH, 1)
    with pytest.raises(ControlError, match="non-empty --reason"):
        store.decide_request(signed("dana", "reject", MONTH, {"request_id": request.id, "reason": " "}))
    rejected = store.decide_request(signed("dana", "reject", MONTH, {"request_id": request.id,
                                                                     "reason": "capacity file is wrong"}))
    assert (rejected.status, rejected.decision_text) == (REJECTED, "capacity file is wrong")
    with pytest.raises(ControlError, match="is rejected by dana"):
        approve(store, request.id, "bob")
    assert [a["rule"] for a in store.alerts(MONTH)] == ["request_rejected"]


def test_an_undecided_request_expires_with_an_alert(store):
    _version(store)
    request = file_finalize(store, MONTH, 1)
    assert store.expire_requests() == []
    expired = store.expire_requests(now=request.expires_at + timedelta(seconds=1))
    assert [r.id for r in expired] == [request.id]
    assert store.request(request.id).status == EXPIRED
    assert [a["rule"] for a in store.alerts(MONTH)] == ["request_expired"]
    with pytest.raises(ControlError, match="is expired"):
        approve(store, request.id, "bob")


def test_a_second_request_waits_for_the_open_one(store):
    _version(store)
    first = file_finalize(store, MONTH, 1)
    with pytest.raises(ControlError, match=f"Request {first.id} to finalize 2026-12 is still open"):
        file_finalize(store, MONTH, 1, "carol")


# ---------------------------------------------------------------- run tickets
def test_a_run_ticket_lets_one_run_of_one_job_write_one_month(store):
    ticket = make_ticket(key("alice"), "alice", "execute_job", [MONTH], 15).encode()
    assert store.claim_ticket(ticket, "execute_job", MONTH, "run-1", system_allowed=False) == "alice"
    assert store.claim_ticket(ticket, "execute_job", MONTH, "run-1", system_allowed=False) == "alice"  # later steps
    with pytest.raises(ControlError, match="was used by run run-1"):
        store.claim_ticket(ticket, "execute_job", MONTH, "run-2", system_allowed=False)
    # A re-execution of run-1 (failed, as the instance says) takes the ticket over, once.
    assert store.claim_ticket(ticket, "execute_job", MONTH, "run-1b", system_allowed=False,
                              reexecution_of="run-1") == "alice"
    with pytest.raises(ControlError, match="was used by run run-1b"):
        store.claim_ticket(ticket, "execute_job", MONTH, "run-1c", system_allowed=False, reexecution_of="run-1")
    with pytest.raises(ControlError, match="is for execute_job, not plan_job"):
        store.claim_ticket(ticket, "plan_job", MONTH, "run-3", system_allowed=True)
    with pytest.raises(ControlError, match="not 2027-01"):
        store.claim_ticket(ticket, "execute_job", "2027-01", "run-4", system_allowed=False)


def test_runs_without_a_valid_ticket_are_refused_and_planning_runs_act_as_the_system(store):
    with pytest.raises(IdentityError, match="carries no run ticket .*batch-admin ticket 2026-12 --job execute_job"):
        store.claim_ticket(None, "execute_job", MONTH, "run-1", system_allowed=False)
    assert store.claim_ticket(None, "plan_job", MONTH, "run-2", system_allowed=True) == "scheduler"
    forged = make_ticket(key("carol"), "alice", "execute_job", [MONTH], 15).encode()
    with pytest.raises(IdentityError, match="not signed with alice's key"):
        store.claim_ticket(forged, "execute_job", MONTH, "run-3", system_allowed=False)
    expired = make_ticket(key("alice"), "alice", "execute_job", [MONTH], 1,
                          now=datetime.now(UTC) - timedelta(minutes=5)).encode()
    with pytest.raises(ControlError, match="expired"):
        store.claim_ticket(expired, "execute_job", MONTH, "run-4", system_allowed=False)
    with pytest.raises(IdentityError, match="does not decode"):
        store.claim_ticket("not-a-ticket!", "execute_job", MONTH, "run-5", system_allowed=False)
    bob_ticket = make_ticket(key("bob"), "bob", "execute_job", [MONTH], 15).encode()
    with pytest.raises(RoleError, match="bob is not an admin"):
        store.claim_ticket(bob_ticket, "execute_job", MONTH, "run-6", system_allowed=False)
    assert len(_refusals(store)) == 3


# ---------------------------------------------------------------- the roles file
def test_a_changed_roles_file_is_refused_until_an_admin_and_an_approver_accept_it(control_url, tmp_path):
    roles_file = tmp_path / "roles.yaml"
    roles_file.write_text(test_roles_file().read_text())
    store = ControlStore(control_url, migrate=True, roles_file=roles_file)
    store.set_params(signed("alice", "params", MONTH, {"changes": {"seed": 1}}))  # accepted on first use
    pem, public = generate_key()
    mallory_key = tmp_path / "mallory.key"
    mallory_key.write_bytes(pem)
    roles_file.write_text(roles_file.read_text().replace("admins: [alice, carol]", "admins: [alice, carol, mallory]")
                          + f"  mallory: {public}\n")
    mallory = sign(_load(mallory_key), "mallory", "params", MONTH, {"changes": {"seed": 666}})
    with pytest.raises(RoleError, match="differs from the roles accepted"):
        store.set_params(mallory)
    with pytest.raises(RoleError, match="differs from the roles accepted"):
        store.set_params(signed("alice", "params", MONTH, {"changes": {"seed": 2}}))
    checksum = Roles.load(roles_file).checksum
    request = store.file_request(signed("alice", "request", None, {
        "kind": "roles", "text": "mallory joins", "binding": {"checksum": checksum, "source": str(roles_file)}}))
    with pytest.raises(RoleError, match="alice filed"):
        approve(store, request.id, "alice")
    approve(store, request.id, "bob")
    assert store.request(request.id).status == DONE
    store.set_params(sign(_load(mallory_key), "mallory", "params", MONTH, {"changes": {"seed": 7}}))
    assert store.params(MONTH)["seed"] == 7
    assert store.roles_file_status()["accepted"]["approved_by"] == "bob"
    assert store.verify_audit().ok
    store.dispose()


def test_pointing_at_another_roles_file_does_not_make_anyone_an_admin(control_url, tmp_path):
    store = open_store(control_url)
    store.set_params(signed("alice", "params", MONTH, {"changes": {"seed": 1}}))
    store.dispose()
    own = tmp_path / "mine.yaml"
    pem, public = generate_key()
    (tmp_path / "mallory.key").write_bytes(pem)
    own.write_text(f"admins: [mallory]\napprovers: []\nkeys:\n  mallory: {public}\n")
    hijacked = ControlStore(control_url, roles_file=own)
    with pytest.raises(RoleError, match="differs from the roles accepted"):
        hijacked.set_params(sign(_load(tmp_path / "mallory.key"), "mallory", "params", MONTH, {"changes": {"x": 1}}))
    hijacked.dispose()


def _load(path: Path):
    return load_private_key("x", str(path))


# ---------------------------------------------------------------- the audit log
def _rehash_from(store: ControlStore, first_id: int) -> None:
    """What an attacker with write access does: recompute every later hash with the product's algorithm."""
    with store.engine.begin() as conn:
        rows = conn.exec_driver_sql("SELECT id, month, at, actor, action, details_json, signed_json, prev_hash "
                                    "FROM audit ORDER BY id").all()
        prev = None
        for r in rows:
            if r[0] < first_id:
                prev = conn.exec_driver_sql(f"SELECT hash FROM audit WHERE id = {r[0]}").scalar()
                continue
            at = r[2] if isinstance(r[2], datetime) else datetime.fromisoformat(str(r[2]))
            digest = _entry_hash(prev or "0" * 64, r[1], at, r[3], r[4], r[5], r[6])
            conn.exec_driver_sql(f"UPDATE audit SET prev_hash = '{prev or '0' * 64}', hash = '{digest}' WHERE id = {r[0]}")
            prev = digest
        count = conn.exec_driver_sql("SELECT count(*) FROM audit").scalar()
        last = conn.exec_driver_sql("SELECT max(id) FROM audit").scalar()
        conn.exec_driver_sql(f"UPDATE audit_head SET last_id = {last or 0}, last_hash = '{prev or '0' * 64}', "
                             f"entries = {count}")


def _history(store: ControlStore) -> dict:
    """Some history, with an anchor taken (as a version manifest would) after it."""
    store.set_params(signed("alice", "params", MONTH, {"changes": {"seed": 1}}))
    _version(store)
    finalize_in_store(store, MONTH, 1)
    return {**store.audit_anchor(), "where": "the final manifest"}


def test_an_edited_signed_entry_is_detected_even_with_every_later_hash_recomputed(store):
    anchor = _history(store)
    assert store.verify_audit([anchor]).ok
    params_id = next(e["id"] for e in store.audit_entries(MONTH) if e["action"] == "params")
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE audit SET details_json = '{json.dumps({'after': {'seed': 9}})}' "
                             f"WHERE id = {params_id}")
    _rehash_from(store, params_id)
    result = store.verify_audit([])  # even without anchors: the signature no longer matches
    assert not result.ok
    assert result.problems[0].startswith(f"entry {params_id} (params)")
    assert not store.verify_audit([anchor]).ok


def test_an_edited_unsigned_entry_rehashed_is_detected_through_the_anchors(store):
    anchor = _history(store)
    run_id = next(e["id"] for e in store.audit_entries(MONTH) if e["action"] == "run")
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE audit SET actor = 'carol' WHERE id = {run_id}")
    _rehash_from(store, run_id)
    assert store.verify_audit([]).ok  # the chain alone was recomputed consistently ...
    result = store.verify_audit([anchor])  # ... but the anchor outside the database disagrees
    assert not result.ok and "differs from the hash anchored by the final manifest" in result.problems[0]


@pytest.mark.parametrize("how", ["truncated", "wiped"])
def test_a_truncated_or_wiped_log_is_detected_through_the_anchors(store, how):
    anchor = _history(store)
    with store.engine.begin() as conn:
        if how == "wiped":
            conn.exec_driver_sql("DELETE FROM audit")
            conn.exec_driver_sql("DELETE FROM audit_head")
        else:
            conn.exec_driver_sql("DELETE FROM audit WHERE id > 2")
    if how == "truncated":
        _rehash_from(store, 1)
    result = store.verify_audit([anchor])
    assert not result.ok
    assert "entries were removed or the log was wiped" in " ".join(result.problems)


def test_state_tables_edited_behind_the_logs_back_are_detected(store):
    _history(store)
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE months SET approved_by = 'mallory' WHERE month = '{MONTH}'")
    result = store.verify_audit()
    assert not result.ok and "finalizer or approver in the state tables differ" in result.problems[0]


# ---------------------------------------------------------------- races
def _approve_in_process(url: str, request_id: str, who: str, queue) -> None:
    store = open_store(url, migrate=False)
    try:
        approve(store, request_id, who)
        queue.put(("won", who))
    except (ControlError, RoleError, IdentityError) as exc:
        queue.put(("lost", str(exc)))
    finally:
        store.dispose()


def test_eight_concurrent_approvals_of_one_request_take_effect_once(store):
    _version(store)
    request = file_finalize(store, MONTH, 1)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_approve_in_process, args=(store.url, request.id, who, queue))
             for who in ["bob", "dana"] * 4]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [r[0] for r in results].count("won") == 1, results
    assert [e["action"] for e in store.audit_entries(MONTH)].count("approve") == 1
    assert store.verify_audit().ok
