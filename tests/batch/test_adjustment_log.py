"""The pins and exclusions in force, and which undo may be added to the log."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from batch.adjustment_log import ALL_REQUESTS, InForce, check_change, describe, in_force
from batch.errors import ControlError

AT = datetime(2026, 12, 7, 13, 0, tzinfo=UTC)


def row(kind: str, request_id: str, resource_id: str | None = None, actor: str = "alice") -> dict:
    return {"kind": kind, "request_id": request_id, "resource_id": resource_id, "actor": actor, "created_at": AT,
            "note": f"{kind} {request_id}"}


def test_an_unpin_or_include_takes_back_only_its_requests_pin_or_exclusion():
    state = in_force([row("pin", "R1", "S1"), row("exclude", "R2"), row("pin", "R3", "S2"),
                      row("unpin", "R1"), row("include", "R2", actor="bob")])

    assert state.pinned() == {"R3": "S2"} and set(state.exclusions) == set()


def test_a_clear_takes_back_everything_before_it_but_nothing_after():
    state = in_force([row("pin", "R1", "S1"), row("exclude", "R2"), row("clear", ALL_REQUESTS), row("exclude", "R4")])

    assert state.pinned() == {} and list(state.exclusions) == ["R4"]
    assert state.exclusions["R4"].actor == "alice" and state.exclusions["R4"].at == AT


@pytest.mark.parametrize(("kind", "request_id", "message"), [
    ("unpin", "R9", "Request R9 is not pinned; there is no pin to take back"),
    ("unpin", "R2", "Request R2 is not pinned (it is excluded: --include takes that back)"),
    ("include", "R1", "Request R1 is not excluded (it is pinned: --unpin takes that back)"),
    ("include", "R9", "Request R9 is not excluded; there is no exclusion to take back"),
])
def test_an_undo_of_nothing_in_force_is_refused_naming_the_request(kind, request_id, message):
    state = in_force([row("pin", "R1", "S1"), row("exclude", "R2")])

    with pytest.raises(ControlError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_change(state, kind, request_id, None, "why")


def test_a_clear_of_a_month_without_adjustments_and_an_unknown_kind_are_refused():
    with pytest.raises(ControlError, match="no pins or exclusions to clear"):
        check_change(InForce(), "clear", None, None, "why")
    with pytest.raises(ControlError, match="must be one of pin, exclude, unpin, include, clear, not 'drop'"):
        check_change(InForce(), "drop", "R1", None, "why")
    assert check_change(in_force([row("exclude", "R2")]), "clear", None, None, "why") == ALL_REQUESTS


def test_the_audit_says_each_undo_in_words():
    assert describe({"kind": "unpin", "request_id": "R1", "note": "contract ended"}) == (
        "unpinned R1; note: contract ended")
    assert describe({"kind": "include", "request_id": "R2", "note": None}) == "included R2 again"
    assert describe({"kind": "clear", "request_id": None, "note": "start over"}) == (
        "cleared every pin and exclusion; note: start over")
