"""How the CLI runs jobs: submitted to the Dagster instance like a run from the UI, then followed.

A run started here has the code location's origin (the UI can re-execute it), goes through the
instance's run queue when a daemon serves it, and executes with the job's own executor in its
own run worker. Without a daemon (the embedded default) the run is launched directly, which
skips the queue and leaves sensors unevaluated; the CLI says so.

While `batch-admin ui` runs, a command hands its run to that ui's webserver instead (batch_cli/ui_runs.py):
this module, and Dagster, are then not even imported.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from assets.guards import fail_dead_run
from batch_cli import local_runs
from batch_cli.instance import daemon_running, instance
from batch_cli.ui_runs import (
    POLL_SECONDS,
    STALL_SECONDS,
    RunError,
    RunEvents,
    RunOutcome,
    month_tags,
    stalled,
    stopped_following,
)
from resources.settings import Settings
from resources.store_factory import open_control_store

NO_DAEMON = ("no Dagster daemon serves this instance: runs are launched directly (no run queue), "
             "and alerts are evaluated only while a daemon runs (`make ui`); said once per home.")
# Beside the instance: the no-daemon note was said in this home (a note on every run is noise).
NO_DAEMON_NOTED = ".no_daemon_noted"
# What Dagster says of a run marked failed by someone else than its executor (its code server,
# when the run worker died).
GENERIC_RUN_FAILURE = "This run has been marked as failed from outside the execution context."
# How often a run executed by this command's own child is read while the child lives (its exit wakes the reader
# at once): each look opens the run and event storages, ~40 ms of CPU per second of the run at POLL_SECONDS and
# ~20 at this pace (measured on the demo month), taken from the child on a busy machine; the step view is then
# at most this late.
CHILD_POLL_SECONDS = 0.5


def _failure_message(the_instance: dg.DagsterInstance, run_id: str) -> str:
    """The first step failure, as the sentence the asset raised; else a failed check; else the run's."""
    records = the_instance.get_records_for_run(run_id, of_type={
        dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.ASSET_CHECK_EVALUATION,
        dg.DagsterEventType.RUN_FAILURE}).records
    events = [r.event_log_entry.dagster_event for r in records if r.event_log_entry.dagster_event]
    for event in events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            data = event.step_failure_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                return data.user_failure_data.description
            if data.error is not None:
                last = data.error.message.strip().splitlines()[-1]
                if "ChildProcessCrashException" in f"{data.error.cls_name} {last}":
                    return _step_died(event.step_key, run_id)
                return last
    # A step that started and never ended while the run failed without saying why: the step's
    # process died, which for steps executed in the run worker is the run worker itself (the code
    # server that launched it then marks the run failed with Dagster's generic sentence).
    said = [e.message for e in events if e.event_type == dg.DagsterEventType.RUN_FAILURE
            and e.message and e.message != GENERIC_RUN_FAILURE]
    unfinished = [] if said else _unfinished_steps(the_instance, run_id)
    if unfinished:
        return _step_died(unfinished[-1], run_id)
    for event in events:
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION and not event.event_specific_data.passed:
            evaluation = event.event_specific_data
            return (f"Check {evaluation.check_name} failed on {evaluation.asset_key.to_user_string()}: "
                    f"{evaluation.description or 'see the run in the Dagster UI'}.")
    # No step said why: the run worker itself died (killed, out of memory) or could not start.
    engine = the_instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
    for record in reversed(engine):
        text = (record.event_log_entry.dagster_event.message or "").strip()
        if "exited" in text or "crash" in text.lower() or "error" in text.lower():
            return f"run {run_id} failed: {text.splitlines()[0]}"
    for event in events:
        if event.event_type == dg.DagsterEventType.RUN_FAILURE and event.message:
            error = getattr(event.event_specific_data, "error", None)
            cause = f" ({error.message.strip().splitlines()[-1]})" if error is not None and error.message.strip() else ""
            return f"run {run_id} failed: {event.message.strip()}{cause}"
    return f"run {run_id} failed; see it in the Dagster UI"


def _unfinished_steps(the_instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The run's steps that started and did not end, in the order they started."""
    records = the_instance.get_records_for_run(run_id, of_type={
        dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE,
        dg.DagsterEventType.STEP_SKIPPED}).records
    started: dict[str, None] = {}
    for record in records:
        step_event = record.event_log_entry.dagster_event
        if step_event is None or not step_event.step_key:
            continue
        if step_event.event_type == dg.DagsterEventType.STEP_START:
            started[step_event.step_key] = None
        else:
            started.pop(step_event.step_key, None)
    return list(started)


def _step_died(step: str | None, run_id: str) -> str:
    return (f"Step {step} died (its process was killed or crashed), so run {run_id} failed; "
            f"`batch-admin status` shows what it left and docs/recovery.md how to recover.")


def follow(the_instance: dg.DagsterInstance, run_id: str, events: RunEvents,
           launch: Callable[[], None] | None = None, worker_exited: threading.Event | None = None) -> RunOutcome:
    """Read the run's new events (by cursor) until it finishes; report steps, logs and part progress.
    A run left queued by a daemon that has gone away is launched with `launch`. A run executed by this
    command's child is read every CHILD_POLL_SECONDS until `worker_exited` (the child exited and its run was
    settled), then at once."""
    cursor: str | None = None
    queued_said = False
    last_sign = time.monotonic()
    while True:
        run = the_instance.get_run_by_id(run_id)
        if run is None:
            raise RunError(f"Run {run_id} was deleted while this command followed it; what it did before is in "
                           f"`batch-admin status` and the audit log.")
        finished = run.is_finished
        while True:
            page = the_instance.get_records_for_run(run_id, cursor=cursor, limit=1000)
            for record in page.records:
                _report(record.event_log_entry, events)
            if page.records or page.cursor != cursor or run.status == dg.DagsterRunStatus.QUEUED:
                last_sign = time.monotonic()
            cursor = page.cursor
            if not page.has_more:
                break
        if not finished and time.monotonic() - last_sign > STALL_SECONDS:
            raise stalled(run_id, run.status.value, STALL_SECONDS)
        if run is not None and run.status == dg.DagsterRunStatus.QUEUED:
            if not queued_said:
                events.on_notice(f"run {run_id} is queued (one run per month; the queue starts it when it may).")
                queued_said = True
            if launch is not None and not daemon_running(the_instance):
                events.on_notice(f"the daemon stopped serving the queue: run {run_id} is launched directly.")
                launch()
                launch = None
        if finished:
            if run.status == dg.DagsterRunStatus.SUCCESS:
                return RunOutcome(run_id, True)
            return RunOutcome(run_id, False, _failure_message(the_instance, run_id))
        if worker_exited is None or worker_exited.is_set():
            time.sleep(POLL_SECONDS)
        else:
            worker_exited.wait(CHILD_POLL_SECONDS)


def _report(entry: Any, events: RunEvents) -> None:
    step = entry.step_key or ""
    event = entry.dagster_event
    if event is not None:
        status = {dg.DagsterEventType.STEP_START: "started", dg.DagsterEventType.STEP_SUCCESS: "done",
                  dg.DagsterEventType.STEP_FAILURE: "failed", dg.DagsterEventType.STEP_SKIPPED: "skipped"}.get(
            event.event_type)
        if status and step:
            events.step(step, status)
        return
    events.log(step, entry.user_message or "")


def fail_dead_holder(the_instance: dg.DagsterInstance, month: str, by: str) -> str | None:
    """A month whose lease is dead (its run's heartbeat stopped: killed, its machine lost): mark that
    run failed, so that the run queue starts the next run of the month and the pool slots of its
    steps are free; the next run takes the lease over (assets/guards.py). The sentence to say, if any."""
    settings = Settings.from_env()
    store = open_control_store(settings)
    try:
        lease = store.lease(month)
    finally:
        store.dispose()
    if lease is None or not lease.dead():
        return None
    return fail_dead_run(the_instance, lease, by)


def first_time(marker: Path) -> bool:
    """True the first time it is asked for `marker` (a file it then creates), False ever after."""
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return False
    return True


def failure_message(run_id: str) -> str:
    """Why a run of this instance failed, as a CLI run says it."""
    return _failure_message(instance(), run_id)


def run_job(job_name: str, month: str | None, tags: Mapping[str, str],
            run_config: Mapping[str, Any] | None = None, events: RunEvents | None = None) -> RunOutcome:
    """Create a run of a job of the code location for a month (or none) in this process, submit it to the
    daemon's queue or, without a daemon, execute it in a child of this process; follow it to its end."""
    events = events or RunEvents()
    the_instance = instance()
    location = local_runs.LocalLocation(the_instance)
    queued = daemon_running(the_instance)
    # Without a daemon the run's worker is forked now: it imports what the run needs while the run is created.
    remote_job = location.job(job_name)
    worker = None if queued else local_runs.Worker(the_instance, remote_job)
    try:
        run = location.create_run(the_instance, remote_job, month_tags(month, tags), dict(run_config or {}))
    except BaseException:
        if worker is not None:
            worker.dismiss()
        raise
    notes = []

    def launch() -> None:
        local_runs.Worker(the_instance, remote_job).start(run)

    if worker is None:
        # A dead run of the month holds the queue's slot of the month: marked failed first. (A run launched
        # directly takes the month over from it in its first step, which marks it failed.)
        failed = fail_dead_holder(the_instance, month, f"run {run.run_id}") if month else None
        if failed:
            events.on_notice(failed)
        local_runs.submit(the_instance, run)
    else:
        if first_time(Path(the_instance.root_directory) / NO_DAEMON_NOTED):
            notes.append(NO_DAEMON)
        worker.start(run)
    try:
        outcome = follow(the_instance, run.run_id, events, launch, None if worker is None else worker.exited)
    except KeyboardInterrupt:
        raise stopped_following(run.run_id) from None
    outcome.notes.extend(notes)
    return outcome
