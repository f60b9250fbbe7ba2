"""A finalize or unlock request is carried out once, only while it is its month's current one, and only
by a run carrying the ticket its approval issued (issue 25, breaks 1 and 2; the recipes replayed)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from batch.approvals import data_checksum
from batch.errors import ControlError
from batch.identity import IdentityError, make_ticket
from batch.lifecycle import FINALIZE_JOB, UNLOCK_JOB, carry_out_finalize, carry_out_unlock
from batch.roles import RoleError
from resources.control_store import ControlStore
from resources.storage import ExportStore
from tests.resources.builders import allocation_rows, caller_manifest
from tests.signing import file_finalize, file_unlock, key, open_store, signed

MONTH = "2026-12"


@pytest.fixture
def store(control_url) -> ControlStore:
    s = open_store(control_url)
    yield s
    s.dispose()


@pytest.fixture
def exports(tmp_path) -> ExportStore:
    return ExportStore(tmp_path / "home")


def _run(store: ControlStore, exports: ExportStore, version: int) -> None:
    rows = allocation_rows([(f"r{i}", f"res{i % 2 + version}") for i in range(4)])
    exports.write_version(MONTH, version, rows, caller_manifest(run_id=f"run-{version}"))
    store.record_version(MONTH, version, "alice", None if version == 1 else "again", f"run-{version}",
                         str(exports.version_path(MONTH, version)), {}, {}, "sha256:abc")


def _approve(store: ControlStore, request_id: str, job: str, by: str = "bob") -> str:
    """bob approves, issuing the request's run ticket as `batch-admin approve` does; the ticket's text."""
    request = store.request(request_id)
    issued = make_ticket(key(by), by, job, [MONTH], 15, request_id=request.id)
    store.decide_request(signed(by, "approve", MONTH, {"request_id": request.id, "binding": request.binding_public(),
                                                       "ticket_nonce": issued.nonce}))
    return issued.encode()


def _finalize(store: ControlStore, exports: ExportStore, version: int) -> str:
    request = file_finalize(store, MONTH, version, checksum=data_checksum(exports.manifest(MONTH, version)))
    _approve(store, request.id, FINALIZE_JOB)
    carry_out_finalize(store, exports, request.id, MONTH, f"finalize-{version}")
    return request.id


def _unlock(store: ControlStore, exports: ExportStore) -> str:
    request = file_unlock(store, MONTH)
    _approve(store, request.id, UNLOCK_JOB)
    carry_out_unlock(store, exports, request.id, MONTH, f"unlock-{request.id}")
    return request.id


@pytest.fixture
def refinalized(store, exports) -> tuple[str, str]:
    """v1 finalized (F1), unlocked (U1), v2 run and finalized (F2): the state of the issue's recipe."""
    _run(store, exports, 1)
    first = _finalize(store, exports, 1)
    unlock = _unlock(store, exports)
    _run(store, exports, 2)
    _finalize(store, exports, 2)
    return first, unlock


def test_a_carried_out_unlock_is_refused_and_the_official_copy_stays(store, exports, refinalized):
    _, unlock = refinalized
    with pytest.raises(ControlError, match=f"request {unlock} .* was carried out already by run unlock-{unlock}"):
        carry_out_unlock(store, exports, unlock, MONTH, "replay")
    assert exports.final_manifest(MONTH)["version"] == 2 and exports.verify_final(MONTH)
    assert store.month(MONTH)["phase"] == "finalized" and store.month(MONTH)["final_version"] == 2
    assert not [a for a in store.alerts(MONTH) if a["rule"] == "month_unlocked"]
    assert store.verify_audit().ok


def test_an_old_finalize_request_does_not_republish_its_superseded_version(store, exports, refinalized):
    first, _ = refinalized
    exports.withdraw_final(MONTH)  # even with the official copy gone, the old request does not fill it
    with pytest.raises(ControlError, match=f"request {first} .* was carried out already"):
        carry_out_finalize(store, exports, first, MONTH, "replay")
    assert exports.final_manifest(MONTH) is None
    assert store.month(MONTH)["final_version"] == 2


def test_an_approved_request_overtaken_by_a_later_carried_out_one_is_refused_and_marked_stale(store, exports):
    _run(store, exports, 1)
    _finalize(store, exports, 1)
    stuck = file_unlock(store, MONTH)
    _approve(store, stuck.id, UNLOCK_JOB)
    # Its approval's run never came; the request expires as an open one, and a second unlock goes through.
    with store.write() as conn:
        conn.execute(sa.text("UPDATE requests SET expires_at = '2000-01-01' WHERE id = :i"),
                     {"i": stuck.id})
    _unlock(store, exports)
    _finalize(store, exports, 1)  # the month is finalized at the same version again
    with pytest.raises(ControlError, match="is overtaken: request .* was carried out after it was approved"):
        carry_out_unlock(store, exports, stuck.id, MONTH, "late")
    assert store.request(stuck.id).status == "stale"
    assert exports.verify_final(MONTH) and store.month(MONTH)["phase"] == "finalized"


def test_a_request_run_needs_the_ticket_its_approval_issued_once(store, exports):
    _run(store, exports, 1)
    request = file_finalize(store, MONTH, 1, checksum=data_checksum(exports.manifest(MONTH, 1)))
    issued = _approve(store, request.id, FINALIZE_JOB)
    with pytest.raises(IdentityError, match=f"carried out only with the ticket its approval issued .*repair {MONTH}"):
        store.claim_ticket(None, FINALIZE_JOB, MONTH, "anon", system_allowed=False, request_id=request.id)
    # A ticket alice or bob signs by hand for the job is not the one the approval issued.
    own = make_ticket(key("bob"), "bob", FINALIZE_JOB, [MONTH], 15, request_id=request.id).encode()
    with pytest.raises(ControlError, match="not issued by the approval of request"):
        store.claim_ticket(own, FINALIZE_JOB, MONTH, "run-own", system_allowed=False, request_id=request.id)
    # The issued ticket serves another request of the month in no case.
    with pytest.raises(ControlError, match="not issued by the approval of request"):
        store.claim_ticket(issued, FINALIZE_JOB, MONTH, "run-x", system_allowed=False, request_id="0000")
    assert store.claim_ticket(issued, FINALIZE_JOB, MONTH, "run-1", system_allowed=False,
                              request_id=request.id) == "bob"
    with pytest.raises(ControlError, match="was used by run run-1"):
        store.claim_ticket(issued, FINALIZE_JOB, MONTH, "run-2", system_allowed=False, request_id=request.id)


def test_a_repair_ticket_replaces_the_approvals_and_only_an_approver_issues_it(store, exports):
    _run(store, exports, 1)
    request = file_finalize(store, MONTH, 1, checksum=data_checksum(exports.manifest(MONTH, 1)))
    issued = _approve(store, request.id, FINALIZE_JOB)
    fresh = make_ticket(key("dana"), "dana", FINALIZE_JOB, [MONTH], 15, request_id=request.id)
    with pytest.raises(RoleError, match="alice does not hold the approver role"):
        store.issue_ticket(signed("alice", "ticket_issued", MONTH, {"request_id": request.id,
                                                                    "ticket_nonce": fresh.nonce}))
    store.issue_ticket(signed("dana", "ticket_issued", MONTH, {"request_id": request.id, "ticket_nonce": fresh.nonce}))
    with pytest.raises(ControlError, match="not issued by the approval"):
        store.claim_ticket(issued, FINALIZE_JOB, MONTH, "run-1", system_allowed=False, request_id=request.id)
    assert store.claim_ticket(fresh.encode(), FINALIZE_JOB, MONTH, "run-2", system_allowed=False,
                              request_id=request.id) == "dana"
    assert store.verify_audit().ok


def test_a_second_approval_after_a_killed_one_points_to_repair(store, exports):
    _run(store, exports, 1)
    request = file_finalize(store, MONTH, 1)
    _approve(store, request.id, FINALIZE_JOB)
    with pytest.raises(ControlError, match=f"pending request can be decided; if the run .* `batch-admin repair {MONTH}`"):
        _approve(store, request.id, FINALIZE_JOB, by="dana")
