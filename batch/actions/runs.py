"""Admit a run (what is checked before a plan or execute run is submitted) and audit an export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from batch.actions.checks import expect, may
from batch.actions.outcome import FollowUp, Outcome
from batch.errors import ControlError
from batch.identity import IdentityError, Signed
from batch.landing import require_inputs
from batch.lifecycle import EXECUTE_JOB, PLAN_JOB
from batch.months import check_planned_month
from batch.ports import ControlPort

# The jobs a person's run ticket admits, and the rule (batch.actions.checks.RULES) each follows.
RUN_JOBS = {EXECUTE_JOB: "run", PLAN_JOB: "plan"}


def run_job_named(name: str | None) -> str:
    """The job a run button asks for (none: execute_job), one of RUN_JOBS."""
    job = (name or "").strip() or EXECUTE_JOB
    if job not in RUN_JOBS:
        raise ControlError(f"A run is one of {', '.join(RUN_JOBS)}, not {job!r}.")
    return job


def may_run(open_store: Callable[[], ControlPort], job: str, actor: str | None, month: str, *,
            home: Path | None = None) -> str:
    """The admin who may run `job` for `month`, asked before their key signs the ticket: the inputs landed
    (under `home`; first, as that needs no database: the store is opened after), then the role."""
    month = _landed(month, home)
    return may(open_store(), RUN_JOBS[job], actor, month)


def _landed(month: str, home: Path | None) -> str:
    """The month, once it is in range and (under `home`, when given) its inputs landed: asked first, as that
    needs no database."""
    month = check_planned_month(month)
    if home is not None:
        require_inputs(home, month)
    return month


def admit_run(store: ControlPort, ticket: Signed, *, month: str, note: str | None = None,
              home: Path | None = None) -> Outcome:
    """Admit one run of the ticket's job for `month`: the inputs landed (under `home`, when given: first,
    as that needs no database), the ticket's signer is an admin, and for execute_job the month is neither
    finalized nor locked for others and, from version 2 on, the run has a note. `Outcome.follows` is the
    run to submit; the run itself claims the ticket (the store verifies its signature once, then)."""
    month = check_planned_month(month)
    job = str(ticket.details.get("job") or "") if isinstance(ticket, Signed) else ""
    if job not in RUN_JOBS:
        raise ControlError(f"A run ticket for {', '.join(RUN_JOBS)} admits a run; this one is for {job or 'nothing'}.")
    if ticket.action != "ticket" or month not in (ticket.details.get("months") or []):
        raise IdentityError(f"The run ticket of {ticket.actor} is not for {job} of {month}: refused.")
    if home is not None:
        require_inputs(home, month)
    with store.unit():  # the role, the locks and the versions read in one transaction
        who = may(store, RUN_JOBS[job], ticket.actor, month)
        if job == EXECUTE_JOB:
            store.check_can_run(month, who, note)
    note = note.strip() if note and note.strip() else None
    return Outcome(RUN_JOBS[job], who, month, f"{job} of {month} admitted for {who}.",
                   follows=FollowUp(job, month, ticket, who, note))


def admit_new_run(open_store: Callable[[], ControlPort], job: str, actor: str | None, month: str,
                  sign: Callable[[str], Signed], *, note: str | None = None, home: Path | None = None) -> Outcome:
    """A client's run of `job` for `month`: the inputs landed (under `home`; before the store is opened),
    the role (before a key is loaded: `sign(who)` makes the run ticket with that person's key), then
    admit_run; the store's reads in one transaction."""
    month = _landed(month, home)
    store = open_store()
    with store.unit():
        who = may(store, RUN_JOBS[job], actor, month)
        return admit_run(store, sign(who), month=month, note=note)


def record_export(store: ControlPort, signed: Signed) -> Outcome:
    """Audit an export (details: what the export store wrote, and the filters), by anyone in the roles."""
    month = expect(signed, "export")
    who = may(store, "export", signed.actor, month)
    store.record_signed(signed)
    return Outcome("export", who, month, f"Wrote {signed.details.get('rows')} rows to {signed.details.get('path')}")
