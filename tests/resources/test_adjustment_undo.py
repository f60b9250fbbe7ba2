"""Undoing pins and exclusions in the control store: signed, audited, refused where a pin would be."""

from __future__ import annotations

import pytest

from resources.control_store import ControlError, ControlStore
from tests.signing import finalize_in_store, open_store, signed

MONTH = "2026-12"


def adjust(store: ControlStore, who: str, kind: str, request_id: str | None, resource_id: str | None = None,
           note: str = "why"):
    return store.add_adjustment(signed(who, "adjust", MONTH, {"kind": kind, "request_id": request_id,
                                                               "resource_id": resource_id, "note": note}))


@pytest.fixture
def store(control_url) -> ControlStore:
    s = open_store(control_url)
    yield s
    s.dispose()


def test_unpin_include_and_clear_take_adjustments_back_and_are_audited_with_their_note(store):
    adjust(store, "alice", "pin", "R1", "S1")
    adjust(store, "alice", "exclude", "R2")
    adjust(store, "alice", "exclude", "R3")

    adjust(store, "carol", "unpin", "R1", note="contract ended")
    adjust(store, "alice", "include", "R2", note="customer came back")
    assert store.pins_and_exclusions(MONTH) == ({}, {"R3"})
    adjust(store, "alice", "clear", None, note="start over")

    assert store.pins_and_exclusions(MONTH) == ({}, set())
    entries = [(e["actor"], e["details"]["kind"], e["details"]["note"]) for e in store.audit_entries(MONTH)[-3:]]
    assert entries == [("carol", "unpin", "contract ended"), ("alice", "include", "customer came back"),
                       ("alice", "clear", "start over")]
    assert store.verify_audit().ok


def test_an_undo_of_nothing_in_force_is_refused_and_changes_nothing(store):
    adjust(store, "alice", "exclude", "R2")
    before = len(store.audit_entries(MONTH))

    with pytest.raises(ControlError, match="Request R2 is not pinned"):
        adjust(store, "alice", "unpin", "R2")
    with pytest.raises(ControlError, match="non-empty --note"):
        adjust(store, "alice", "include", "R2", note=" ")

    assert len(store.audit_entries(MONTH)) == before and store.pins_and_exclusions(MONTH) == ({}, {"R2"})


def test_an_undo_is_refused_on_a_finalized_month_and_under_another_admins_lock(store):
    adjust(store, "alice", "pin", "R1", "S1")
    store.take_lock(signed("alice", "lock", MONTH, {"admins": ["alice"], "ttl_hours": 1}))
    with pytest.raises(ControlError, match="carol may not adjust it"):
        adjust(store, "carol", "unpin", "R1")
    store.release_lock(signed("alice", "release", MONTH))
    store.record_version(MONTH, 1, "alice", None, "run-1", f"/exports/month={MONTH}/version=1", {}, {"requests": 1},
                         "f" * 64)
    finalize_in_store(store, MONTH, 1)

    for kind in ("unpin", "clear"):
        with pytest.raises(ControlError, match=r"finalized \(version 1"):
            adjust(store, "alice", kind, "R1")
    assert store.pins_and_exclusions(MONTH) == ({"R1": "S1"}, set())
