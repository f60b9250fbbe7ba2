"""Parameters, pins and exclusions, and repair's new ticket, through the action layer against the real
SQLite control store: the values and landed ids are checked before anything is stored."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from batch.actions import reissue
from batch.actions.changes import adjust, adjust_details, params_details, set_params
from batch.approvals import TICKET_ISSUED_ACTION
from batch.demo_data import generate_month, write_landing
from batch.errors import ControlError
from batch.identity import IdentityError, make_ticket
from batch.lifecycle import UNLOCK_JOB
from batch.params import ParamError
from batch.roles import RoleError
from resources.control_store import ControlStore
from tests.actions.test_actions import MONTH, _finalize_request, _version
from tests.signing import approve, file_unlock, finalize_in_store, key, open_store, signed


@pytest.fixture
def store(tmp_path) -> Iterator[ControlStore]:
    s = open_store(f"sqlite:///{tmp_path / 'control.db'}")
    yield s
    s.dispose()


def test_parameters_are_validated_set_and_unset_by_an_admin(store):
    outcome = set_params(store, signed("carol", "params", MONTH, params_details({"seed": "7"}, [])))
    assert outcome.params == {"seed": 7} and outcome.actor == "carol"
    assert set_params(store, signed("alice", "params", MONTH, params_details({}, ["seed"]))).params == {}
    with pytest.raises(ParamError, match="both set and unset"):
        params_details({"seed": "4"}, ["seed"])
    with pytest.raises(ControlError, match="at least one --set"):
        params_details({}, [])
    before = len(store.audit_entries(MONTH))
    # A signed change that bypasses params_details is still checked: nothing invalid is stored.
    with pytest.raises(ParamError, match="Parameter seed must be an integer"):
        set_params(store, signed("alice", "params", MONTH, {"changes": {"seed": "x"}}))
    with pytest.raises(RoleError, match="bob is not an admin .* may not change parameters of 2026-12"):
        set_params(store, signed("bob", "params", MONTH, {"changes": {"seed": 3}}))
    assert len(store.audit_entries(MONTH)) == before and store.params(MONTH) == {}


def test_a_pin_names_landed_ids_and_a_lock_of_others_refuses_it(store, tmp_path):
    tables = generate_month(MONTH, requests=40, resources=6, seed=5)
    write_landing(tmp_path, MONTH, tables)
    with pytest.raises(ControlError, match="Request R-nope is not among the 40 requests landed"):
        adjust(store, signed("alice", "adjust", MONTH, adjust_details("exclude", "R-nope", "why")), home=tmp_path)
    with pytest.raises(ControlError, match="must look like REQUEST_ID=RESOURCE_ID"):
        adjust_details("pin", "R-1", "why")
    first = str(tables["requests"]["request_id"].iloc[0])
    outcome = adjust(store, signed("alice", "adjust", MONTH, adjust_details("exclude", first, "cancelled")),
                     home=tmp_path)
    assert outcome.message == f"{MONTH}: excluded {first}; the next run honours it."
    assert store.pins_and_exclusions(MONTH)[1] == {first}
    store.take_lock(signed("alice", "lock", MONTH, {"admins": [], "ttl_hours": 1}))
    with pytest.raises(ControlError, match="carol may not adjust it"):
        adjust(store, signed("carol", "adjust", MONTH, adjust_details("include", first, "back")), home=tmp_path)
    assert store.pins_and_exclusions(MONTH)[1] == {first}


def test_repair_reissues_the_ticket_of_an_approved_unlock_and_its_job_follows(store):
    _version(store)
    finalize_in_store(store, MONTH, 1)
    request = file_unlock(store, MONTH)
    approve(store, request.id, "bob")
    ticket = make_ticket(key("dana"), "dana", UNLOCK_JOB, [MONTH], 15, request_id=request.id)
    details = {"request_id": request.id, "ticket_nonce": ticket.nonce}
    with pytest.raises(IdentityError, match="is not the one dana signed"):
        reissue(store, signed("dana", TICKET_ISSUED_ACTION, MONTH, {**details, "ticket_nonce": "x"}), ticket=ticket)
    outcome = reissue(store, signed("dana", TICKET_ISSUED_ACTION, MONTH, details), ticket=ticket)
    assert (outcome.follows.job, outcome.follows.month, outcome.follows.ticket) == (UNLOCK_JOB, None, ticket)
    assert outcome.follows.run_config == {"ops": {"unlock_finalized_month": {"config": {"request_id": request.id}}}}
    assert store.audit_entries(MONTH)[-1]["action"] == TICKET_ISSUED_ACTION


def test_a_finalize_request_of_someone_elses_locked_month_is_refused(store):
    _version(store)
    store.take_lock(signed("carol", "lock", MONTH, {"admins": [], "ttl_hours": 1}))
    with pytest.raises(ControlError, match="alice may not finalize it"):
        _finalize_request(store)
    assert store.requests(MONTH) == []
