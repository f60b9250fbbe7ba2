"""The control store's rules on SQLite and on the real PostgreSQL, including races of processes."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from batch.identity import IdentityError
from batch.names import TRACE_VAR
from resources.control_store import (
    PHASE_FINALIZED,
    PHASE_OPEN,
    PHASE_PLANNING,
    PHASE_PROPOSED,
    ControlError,
    ControlStore,
)
from resources.migrations import HEAD_REVISION, current_revision
from tests.signing import approve, file_finalize, file_unlock, finalize_in_store, open_store, signed

MONTH = "2026-12"


def _version(store: ControlStore, version: int = 1, month: str = MONTH) -> None:
    store.record_version(month, version, "alice", None if version == 1 else "why", f"run-{version}",
                         f"/exports/month={month}/version={version}", {"seed": 0}, {"requests": 10}, "f" * 64)


def params(store: ControlStore, who: str, changes: dict, month: str = MONTH):
    return store.set_params(signed(who, "params", month, {"changes": changes}))


def adjust(store: ControlStore, who: str, kind: str, request_id: str, resource_id: str | None, note: str):
    return store.add_adjustment(signed(who, "adjust", MONTH, {"kind": kind, "request_id": request_id,
                                                               "resource_id": resource_id, "note": note}))


def lock(store: ControlStore, who: str, admins: list[str], ttl_hours: float):
    return store.take_lock(signed(who, "lock", MONTH, {"admins": admins, "ttl_hours": ttl_hours}))


def release(store: ControlStore, who: str):
    return store.release_lock(signed(who, "release", MONTH))


@pytest.fixture
def store(control_url) -> ControlStore:
    s = open_store(control_url)  # migrated as `batch-admin migrate` does
    yield s
    s.dispose()


def test_an_embedded_store_is_migrated_on_first_use(tmp_path):
    store = ControlStore(f"sqlite:///{tmp_path / 'control.db'}")
    assert current_revision(store.engine) == HEAD_REVISION
    store.dispose()


@pytest.mark.postgres
def test_a_postgres_store_is_migrated_only_by_batch_admin_migrate(postgres_url):
    with pytest.raises(ControlError, match="run `batch-admin migrate` first"):
        ControlStore(postgres_url)
    ControlStore(postgres_url, migrate=True).dispose()
    store = ControlStore(postgres_url)  # now current: opens without migrating
    assert current_revision(store.engine) == HEAD_REVISION
    store.dispose()


def test_a_run_snapshot_is_taken_once_and_read_back_unchanged(store):
    params(store, "alice", {"seed": 3})
    adjust(store, "alice", "pin", "Q1", "R1", "contract")
    first = store.run_snapshot(MONTH, "run-1", "alice", "why")
    params(store, "alice", {"seed": 4})
    adjust(store, "alice", "exclude", "Q2", None, "gone")
    assert store.run_snapshot(MONTH, "run-1", "alice", "why") == first
    assert first["params"] == {"seed": 3} and first["pins"] == {"Q1": "R1"} and first["exclusions"] == []
    later = store.run_snapshot(MONTH, "run-2", "alice", "next")
    assert later["params"] == {"seed": 4} and later["exclusions"] == ["Q2"]
    assert [s["run_id"] for s in store.run_snapshots(MONTH)] == ["run-1", "run-2"]


def test_a_month_moves_from_open_through_planning_and_proposed_to_finalized(store):
    assert store.month(MONTH)["phase"] == PHASE_OPEN
    store.record_plan(MONTH, "alice", "run-0", {"requests": 10})
    assert store.month(MONTH)["phase"] == PHASE_PLANNING
    _version(store)
    assert store.month(MONTH)["phase"] == PHASE_PROPOSED
    finalize_in_store(store, MONTH, 1)
    row = store.month(MONTH)
    assert (row["phase"], row["final_version"], row["finalized_by"], row["approved_by"]) == (PHASE_FINALIZED, 1, "alice", "bob")
    assert store.versions(MONTH)[0]["status"] == "final"


def test_a_finalized_month_refuses_runs_params_adjustments_and_a_second_finalization(store):
    _version(store)
    finalize_in_store(store, MONTH, 1)
    for action in (lambda: store.check_can_run(MONTH, "alice", "note"),
                   lambda: params(store, "alice", {"seed": 1}),
                   lambda: adjust(store, "alice", "exclude", "R1", None, "why"),
                   lambda: store.record_plan(MONTH, "alice", "r", {}),
                   lambda: file_finalize(store, MONTH, 1, "carol")):
        with pytest.raises(ControlError, match=r"finalized \(version 1, by alice, approved by bob.*batch-admin unlock"):
            action()


def test_a_finalize_request_needs_an_existing_version_with_the_inputs_it_names(store):
    binding = {"version": 3, "data_checksum": "c" * 64, "input_fingerprint": "f" * 64, "versions_seen": 0}
    with pytest.raises(ControlError, match="no version 3"):
        store.file_request(signed("alice", "request", MONTH, {"kind": "finalize", "text": "ok", "binding": binding}))
    _version(store)
    other = {**binding, "version": 1, "input_fingerprint": "e" * 64, "versions_seen": 1}
    with pytest.raises(ControlError, match="other inputs"):
        store.file_request(signed("alice", "request", MONTH, {"kind": "finalize", "text": "ok", "binding": other}))
    assert store.requests(MONTH) == []


def test_from_version_two_on_a_run_needs_a_change_note(store):
    store.check_can_run(MONTH, "alice", None)
    _version(store)
    with pytest.raises(ControlError, match="needs a change note"):
        store.check_can_run(MONTH, "alice", "  ")
    store.check_can_run(MONTH, "alice", "pinned R1")


def test_a_temporary_lock_admits_only_its_admins_and_refuses_a_second_holder(store):
    lock(store, "alice", ["alice"], ttl_hours=1)
    with pytest.raises(ControlError, match="already locked by alice since"):
        lock(store, "carol", ["carol"], ttl_hours=1)
    with pytest.raises(ControlError, match="carol may not change parameters"):
        params(store, "carol", {"seed": 2})
    with pytest.raises(ControlError, match="without an actor may not pass the lock"):
        store.guard_write(MONTH, None, "run")
    params(store, "alice", {"seed": 2})
    with pytest.raises(ControlError, match="Only alice"):
        release(store, "carol")
    release(store, "alice")
    params(store, "carol", {"seed": 3})


def test_a_lock_expires_after_its_time_to_live(store):
    lock(store, "alice", ["alice"], ttl_hours=0.5 / 3600)
    time.sleep(0.8)
    assert not store.lock_info(MONTH).active()
    params(store, "carol", {"seed": 1})
    lock(store, "carol", ["carol"], ttl_hours=1)
    assert store.lock_info(MONTH).holder == "carol"


def test_unlock_needs_a_reason_and_another_persons_approval_and_returns_the_month_to_proposed(store):
    _version(store)
    finalize_in_store(store, MONTH, 1)
    with pytest.raises(ControlError, match="non-empty --reason"):
        file_unlock(store, MONTH, reason=" ")
    request = file_unlock(store, MONTH, reason="wrong capacity file")
    with pytest.raises(ControlError, match="not an approved unlock"):
        store.complete_unlock(request.id, "run-x")
    assert store.month(MONTH)["phase"] == PHASE_FINALIZED
    approve(store, request.id, "dana")
    store.complete_unlock(request.id, "run-x")
    assert store.month(MONTH)["phase"] == PHASE_PROPOSED
    assert store.versions(MONTH)[0]["status"] == "proposed"
    entry = store.audit_entries(MONTH)[-1]
    assert (entry["action"], entry["details"]["reason"], entry["details"]["approver"]) == (
        "unlock", "wrong capacity file", "dana")


def test_the_latest_adjustment_of_a_request_wins(store):
    adjust(store, "alice", "pin", "R1", "S1", "contract")
    adjust(store, "alice", "exclude", "R2", None, "cancelled")
    adjust(store, "alice", "exclude", "R1", None, "cancelled too")
    pins, excluded = store.pins_and_exclusions(MONTH)
    assert pins == {} and excluded == {"R1", "R2"}
    with pytest.raises(ControlError, match="non-empty --note"):
        adjust(store, "alice", "pin", "R3", "S1", "")


def test_one_run_holds_a_month_at_a_time(store):
    store.acquire_lease(MONTH, "run-a")
    store.acquire_lease(MONTH, "run-a")  # the same run again is fine
    with pytest.raises(ControlError, match="being executed by run run-a"):
        store.acquire_lease(MONTH, "run-b")
    store.acquire_lease(MONTH, "run-b", finished_holder="run-a")
    assert store.lease_holder(MONTH) == "run-b"
    store.release_lease(MONTH, "run-b")
    assert store.lease_holder(MONTH) is None


def test_two_runs_that_saw_the_holder_finish_cannot_both_take_the_month(store):
    store.acquire_lease(MONTH, "crashed")
    store.acquire_lease(MONTH, "run-a", finished_holder="crashed")
    # run-b saw the same crashed holder finish, but run-a holds the month by now.
    with pytest.raises(ControlError, match="being executed by run run-a"):
        store.acquire_lease(MONTH, "run-b", finished_holder="crashed")
    assert store.lease_holder(MONTH) == "run-a"


def test_every_action_is_audited_and_the_chain_verifies(store):
    params(store, "alice", {"seed": 1})
    lock(store, "alice", ["alice"], 1)
    _version(store)
    finalize_in_store(store, MONTH, 1)
    actions = [e["action"] for e in store.audit_entries(MONTH)]
    assert actions == ["params", "lock", "run", "request", "approve", "finalize"]
    assert store.verify_audit().ok


@pytest.mark.parametrize("tamper", [
    "UPDATE audit SET details_json = '{\"seed\":99}' WHERE id = 1",
    "DELETE FROM audit WHERE id = 2",
    "DELETE FROM audit WHERE id = (SELECT max(id) FROM audit)",
    "UPDATE audit SET actor = 'mallory' WHERE id = 3",
], ids=["changed", "removed in the middle", "removed at the end", "actor changed"])
def test_a_changed_or_removed_audit_entry_is_detected(store, tamper):
    params(store, "alice", {"seed": 1})
    params(store, "alice", {"seed": 2})
    params(store, "alice", {"seed": 3})
    assert store.verify_audit().ok
    with store.engine.begin() as conn:
        conn.exec_driver_sql(tamper)
    result = store.verify_audit()
    assert not result.ok and result.problems


def test_an_alert_is_stored_once_per_dedup_key(store):
    assert store.add_alert(MONTH, "stale_lock", "warning", "Lock is stale.", {}, "k1") is not None
    assert store.add_alert(MONTH, "stale_lock", "warning", "Lock is stale.", {}, "k1") is None
    assert [a["rule"] for a in store.alerts(MONTH)] == ["stale_lock"]


# ---------------------------------------------------------------- races of processes
def _try(url: str, action: str, who: str, queue) -> None:
    store = open_store(url, migrate=False)
    try:
        if action == "lock":
            lock(store, who, [who], 1)
        elif action == "lease":
            store.acquire_lease(MONTH, f"run-{who}")
        queue.put(("won", who))
    except ControlError as exc:
        queue.put(("lost", str(exc)))
    finally:
        store.dispose()


def _race(url: str, action: str, players: list[str]) -> list[tuple[str, str]]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_try, args=(url, action, who, queue)) for who in players]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return results


@pytest.mark.parametrize(("action", "players"), [("lock", ["alice", "carol"]),
                                                 ("lease", ["a", "b", "c", "d", "e", "f", "g", "h"])])
def test_concurrent_processes_on_one_month_have_exactly_one_winner(store, action, players):
    _version(store)
    results = _race(store.url, action, players)
    winners = [r for r in results if r[0] == "won"]
    assert len(winners) == 1, results
    assert store.verify_audit().ok


def test_concurrent_audited_writes_lose_no_entry(store):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_params, args=(store.url, i)) for i in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    entries = store.audit_entries(MONTH)
    assert len(entries) == 6 * 5
    assert store.verify_audit().ok


def _write_params(url: str, worker: int) -> None:
    store = open_store(url, migrate=False)
    for i in range(5):
        params(store, "alice", {f"w{worker}": i})
    store.dispose()


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), 1e9])
def test_a_lock_time_to_live_outside_its_range_is_refused(store, ttl):
    with pytest.raises(ControlError, match="time to live must be more than 0 and at most 744 hours"):
        lock(store, "alice", ["alice"], ttl)
    assert store.lock_info(MONTH) is None


def test_a_unit_is_one_transaction_that_keeps_each_write_as_its_own_transaction_would(store, monkeypatch, tmp_path):
    """ControlStore.unit (the run's admission, a step's check): one transaction, and a refusal inside it
    undoes only the refused change; what was written before it stays, a refused signature stays audited."""
    trace = tmp_path / "trace.tsv"
    monkeypatch.setenv(TRACE_VAR, str(trace))
    traced = open_store(store.url)
    trace.unlink(missing_ok=True)  # its schema revision, read as it opened
    try:
        params(traced, "alice", {"seed": 1})  # a signed action: its roles are read inside its write
        assert len(trace.read_text().splitlines()) == 1
        entries = len(traced.audit_entries(MONTH))
        trace.unlink()
        with pytest.raises(ControlError, match="holds no temporary lock"), traced.unit():
            params(traced, "alice", {"seed": 2})
            traced.acquire_lease(MONTH, "run-1")
            with pytest.raises(IdentityError, match="not signed with alice's key"):
                traced.set_params(signed("alice", "params", MONTH, {"changes": {"seed": 9}}, key_of="bob"))
            traced.release_lock(signed("alice", "release", MONTH))  # refused: no lock to release
        assert len(trace.read_text().splitlines()) == 1
    finally:
        traced.dispose()
    assert store.params(MONTH) == {"seed": 2} and store.lease_holder(MONTH) == "run-1"
    actions = [entry["action"] for entry in store.audit_entries(MONTH)[entries:]]
    assert actions == ["params", "refused"]  # the forged change undone, its refusal kept
    assert store.verify_audit().ok
