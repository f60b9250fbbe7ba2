"""What every writing asset does first: who acts, the final lock, the temporary lock, the lease, the snapshot."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from batch.errors import ControlError
from batch.identity import TICKET_TAG, IdentityError
from batch.lifecycle import PLAN_JOB
from batch.months import MonthError, check_planned_month
from batch.names import ACTOR_TAG, MONTH_TAG, NOTE_TAG, PARTITION_TAG
from batch.roles import RoleError
from batch.snapshot import RunSnapshot
from resources.control_store import ControlStore, LeaseInfo
from resources.settings import lease_stale_after_s

# Assets of the monthly chain in execution order; the last one a run executes releases the lease.
CHAIN = ("landed_inputs", "validated_inputs", "capacity_plan", "allocation_parts", "allocation_proposal",
         "allocation_export")


def refuse(message: str) -> dg.Failure:
    """A failure that must not be retried: retrying cannot make a refusal pass."""
    return dg.Failure(description=message, allow_retries=False)


Context = dg.AssetExecutionContext | dg.OpExecutionContext
# How often a run that meets a month held by another looks again for that run's heartbeat.
AWAIT_POLL_S = 1.0
# The runs whose ticket a re-execution may take over.
REEXECUTABLE = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
# The log line of the moment a run holds its month (after any wait for the previous holder).
MONTH_HELD = "This run holds month "
# A run releases its month in its last writing step and ends a moment later (that step's last events,
# the run's end). The next holder waits for it to end, at most this long: a run stuck in progress in
# Dagster (its process gone, no daemon to mark it failed) costs each later run this wait, said in its log.
AWAIT_END_S = 10.0
AWAIT_END_POLL_S = 0.1
# The tags that name a run's month: the monthly assets' partition, and the month of an unlock run.
MONTH_TAGS = (PARTITION_TAG, MONTH_TAG)
IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def _holder_finished(context: Context, holder_run_id: str | None) -> bool:
    if holder_run_id is None or holder_run_id == context.run.run_id:
        return False
    run = context.instance.get_run_by_id(holder_run_id)
    return run is None or run.is_finished


def begin_write(context: Context, store: ControlStore, what: str) -> RunSnapshot:
    """Refuse before anything is written when the run has no valid ticket (planning runs act as the
    system identity), or the month is finalized, locked for others or busy; else the run's snapshot
    (taken by its first step, read back by every later one). One transaction (`entered`)."""
    with entered(context, store, what) as snapshot:
        return snapshot


@contextmanager
def entered(context: Context, store: ControlStore, what: str) -> Iterator[RunSnapshot]:
    """`begin_write` with the step's own reads and checks (the body of the `with`, never a wait) in the
    same transaction: the run is the unit. A later step of an admitted run re-checks only what can change
    during a run (its lease, the final lock, the temporary lock: `ControlStore.resume_run`); the first
    step admits the run: ticket, roles, locks, lease and snapshot. Only a month held by another live run
    takes more (the wait for that run's sign of life happens outside any transaction)."""
    month, run_id = context.partition_key, context.run.run_id
    note = context.run.tags.get(NOTE_TAG) or None
    taken: tuple[str | None, LeaseInfo | None] | None = None  # the holder before this run, a dead one's lease
    done = False
    try:
        check_planned_month(month)  # a launch for a month out of range leaves no trace in the store
        with store.unit():
            admitted = store.resume_run(month, run_id, what)
            if admitted is None:
                actor = _admit(context, store, what)
                seen = store.lease(month)
                if not _held_by_another_live_run(context, seen):
                    holder = seen.run_id if seen is not None else None
                    taken = holder, _acquire(context, store, holder)
                    admitted = store.run_snapshot(month, run_id, actor, note)
            if admitted is not None:
                store.beat_leases(run_id)  # the step is the run's sign of life (pipelines/executor.py)
                yield RunSnapshot.from_dict(admitted)
                done = True
        if not done:  # another run holds the month: wait for its sign of life or its death, then take it
            take_month(context, store)
            with store.unit():
                admitted = store.run_snapshot(month, run_id, actor, note)
                yield RunSnapshot.from_dict(admitted)
                done = True
    except (ControlError, RoleError, IdentityError, MonthError) as exc:
        raise refuse(str(exc)) from None
    finally:
        if taken is not None:
            _announce(context, taken[0], taken[1], wait=done)


def _admit(context: Context, store: ControlStore, what: str) -> str:
    """The first step's checks: the run ticket (claimed once), the person it names, the final and temporary
    locks; the actor the run acts as."""
    month, tags = context.partition_key, context.run.tags
    actor = store.claim_ticket(tags.get(TICKET_TAG), context.job_name, month, context.run.run_id,
                               system_allowed=context.job_name == PLAN_JOB, reexecution_of=reexecution_of(context))
    if tags.get(ACTOR_TAG) and tags[ACTOR_TAG] != actor:
        raise ControlError(f"The run tag {ACTOR_TAG}={tags[ACTOR_TAG]} names another person than its run "
                           f"ticket ({actor}).")
    store.guard_write(month, actor, what)
    return actor


def reexecution_of(context: Context) -> str | None:
    """The run this one re-executes, when the instance (never the caller's word) says it is a failed or
    canceled run that carried the same ticket; None otherwise."""
    parent_id, ticket = context.run.parent_run_id, context.run.tags.get(TICKET_TAG)
    parent = context.instance.get_run_by_id(parent_id) if parent_id and ticket else None
    if parent is None or parent.status not in REEXECUTABLE or parent.tags.get(TICKET_TAG) != ticket:
        return None
    return parent.run_id


def claim_request(context: Context, store: ControlStore, request_id: str, month: str) -> str:
    """A finalize or unlock run's right to carry out its request: the ticket that request's approval issued."""
    try:
        return store.claim_ticket(context.run.tags.get(TICKET_TAG), context.job_name, month, context.run.run_id,
                                  system_allowed=False, reexecution_of=reexecution_of(context),
                                  request_id=request_id)
    except (ControlError, RoleError, IdentityError) as exc:
        raise refuse(str(exc)) from None


def take_month(context: Context, store: ControlStore) -> None:
    """The month's lease: one run (execution or finalization) at a time. A run that took the month
    over from a dead one (its heartbeat stopped) marks that run failed."""
    _await_sign_of_life(context, store, context.partition_key)
    holder = store.lease_holder(context.partition_key)
    _announce(context, holder, _acquire(context, store, holder), wait=True)


def _acquire(context: Context, store: ControlStore, holder: str | None) -> LeaseInfo | None:
    """Take the month from `holder` (none, this run, a finished run, or a dead one); a dead holder's lease."""
    finished = holder if _holder_finished(context, holder) else None
    return store.acquire_lease(context.partition_key, context.run.run_id, finished_holder=finished)


def _announce(context: Context, holder: str | None, dead: LeaseInfo | None, wait: bool) -> None:
    """After the month was taken: the dead holder marked failed; when the month was not this run's already,
    the wait for earlier holders to end (unless the step was refused) and the log line that it holds it."""
    month, run_id = context.partition_key, context.run.run_id
    if dead is not None:
        message = fail_dead_run(context.instance, dead, f"run {run_id}")
        context.log.warning(message or f"Took month {month} over from run {dead.run_id}, whose lease was dead.")
    if holder != run_id:  # said once, by the step that took the month (later steps hold it already)
        if wait:
            _await_end_of_earlier_holders(context, month)
        context.log.info(f"{MONTH_HELD}{month}: no other run writes to it until this run ends.")


def _earlier_holders_in_progress(context: Context, month: str) -> list[str]:
    """Other runs of the month still in progress in Dagster that held the month (they said so in their
    log); a run that never held it (refused at its take of the month) is not waited for."""
    ids = {record.dagster_run.run_id
           for tag in MONTH_TAGS
           for record in context.instance.get_run_records(
               filters=dg.RunsFilter(tags={tag: month}, statuses=IN_PROGRESS))}
    ids.discard(context.run.run_id)
    return sorted(run_id for run_id in ids
                  if any((event.user_message or "").startswith(MONTH_HELD) for event in context.instance.all_logs(run_id)))


def _await_end_of_earlier_holders(context: Context, month: str) -> None:
    """The month is this run's now; the run that held it before may still be ending (it released the
    month in its last writing step, and its last events and its end follow). Wait until it ended, so
    that two runs of a month never execute at the same time, not even their last events; at most
    AWAIT_END_S."""
    holders = _earlier_holders_in_progress(context, month)
    deadline = time.monotonic() + AWAIT_END_S
    while holders and time.monotonic() < deadline:
        time.sleep(AWAIT_END_POLL_S)
        holders = [run_id for run_id in holders if not _holder_finished(context, run_id)]
    if holders:
        context.log.warning(f"Run(s) {', '.join(holders)}, which held month {month} before, still show as in "
                            f"progress in Dagster {AWAIT_END_S:.0f} s after this run took the month: going on "
                            f"(the month is this run's; a run whose process is gone stays in progress until it is "
                            f"marked failed).")


def _held_by_another_live_run(context: Context, seen: LeaseInfo | None) -> bool:
    """The lease seen is another run's, that run beats and has not finished: whether it lives is told by
    its next heartbeat (`_await_sign_of_life`)."""
    return not (seen is None or seen.run_id == context.run.run_id or seen.heartbeat_at is None or seen.dead()
                or _holder_finished(context, seen.run_id))


def _await_sign_of_life(context: Context, store: ControlStore, month: str) -> None:
    """A month held by another run that has not finished: wait for that run's next heartbeat (it
    lives, and the month is refused) or for its lease to die (the month is taken over), so that a
    run started right after its predecessor was killed takes the month over instead of failing for
    being early. A live holder beats within lease_heartbeat_s(); a dead one is dead within
    lease_stale_after_s() of its last beat."""
    seen = store.lease(month)
    if seen is None or not _held_by_another_live_run(context, seen):
        return
    context.log.info(f"Month {month} is held by run {seen.run_id} (last heartbeat {seen.heartbeat_age():.0f} s ago): "
                     f"waiting for its next heartbeat, or {lease_stale_after_s():g} s without one, to tell whether it "
                     f"lives.")
    while True:
        time.sleep(AWAIT_POLL_S)
        lease = store.lease(month)
        if (lease is None or lease.run_id != seen.run_id or lease.heartbeat_at != seen.heartbeat_at or lease.dead()
                or _holder_finished(context, seen.run_id)):
            return


def fail_dead_run(instance: dg.DagsterInstance, lease: LeaseInfo, by: str) -> str | None:
    """Mark the run of a dead lease failed in Dagster (unless it finished) and free the pool slots
    its steps held; the sentence said, or None when the run had finished already."""
    run = instance.get_run_by_id(lease.run_id)
    if run is None or run.is_finished:
        return None
    why = lease.why_dead() or f"heartbeat {lease.heartbeat_age():.0f} s ago"
    message = (f"Run {lease.run_id} is marked failed: it lost its hold on month {lease.month} ({why}; its run worker "
               f"was killed, hung or lost its machine), and {by} took the month over.")
    instance.report_run_failed(run, message=message)
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(lease.run_id)
    return message


def _executed_chain(context: Context) -> list[str]:
    """The chain assets this run executes: its asset selection, narrowed by re-executed steps."""
    keys = context.run.asset_selection or context.job_def.asset_layer.selected_asset_keys
    names = {key.to_user_string() for key in keys}
    steps = context.run.step_keys_to_execute
    if steps is not None:
        names = {name for name in names if any(step.split(".", 1)[0].split("[", 1)[0] == name for step in steps)}
    return [name for name in CHAIN if name in names]


def end_write(context: Context, store: ControlStore, asset_name: str) -> None:
    """Release the month's lease after the last chain asset this run executes."""
    executed = _executed_chain(context)
    if not executed or executed[-1] == asset_name:
        store.release_lease(context.partition_key, context.run.run_id)
