"""How a command runs a job: admitted by the action layer, submitted, and followed with a live view on stderr."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from batch import actions
from batch.actions import FollowUp, Outcome
from batch.identity import DEFAULT_TICKET_MINUTES, TICKET_TAG, Signed, make_ticket
from batch.roles import ACTOR_TAG, NOTE_TAG, actor_from
from batch_cli.context import settings, signer, store
from batch_cli.failures import CliError
from batch_cli.output import err

if TYPE_CHECKING:
    from batch_cli.ui_runs import RunEvents

SOLVE_STEP = re.compile(r"^allocation_parts\.solve_part\[part_(\d+)\]$")


def admitted(job: str, month: str, actor: str | None, note: str | None) -> Outcome:
    """A run of `job` for `month`, admitted by the action layer with a new run ticket of the actor's."""
    # The landing folder first, then the role, then the key: a refusal names what is missing.
    return actions.admit_new_run(store, job, actor_from(actor), month,
                                 lambda who: make_ticket(signer(who), who, job, [month], DEFAULT_TICKET_MINUTES),
                                 note=note, home=settings().home)


def follow(follows: FollowUp | None) -> str:
    """Submit and follow the run an action says follows, with its ticket."""
    assert follows is not None  # an approval, a repair or an admitted run names its run
    return run_or_fail(follows.job, follows.month, follows.actor, follows.note, follows.run_config or None,
                       ticket=follows.ticket)


@contextmanager
def _progress(title: str) -> Iterator[RunEvents]:
    """Live view of a run on stderr: the current step, and one bar per solve part."""
    # Deferred: start-up speed (urllib); Dagster loads only for a run that no running ui takes (run_or_fail).
    from batch_cli.ui_runs import RunEvents

    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                        console=err, transient=not err.is_terminal)
    overall = progress.add_task(title, total=None)
    parts: dict[int, Any] = {}

    def on_step(step: str, status: str) -> None:
        part = SOLVE_STEP.match(step)
        if part and status == "done" and int(part.group(1)) + 1 in parts:
            task = parts[int(part.group(1)) + 1]
            progress.update(task, completed=progress.tasks[task].total)
        # Step keys hold brackets (solve_part[part_0]) that rich would read as markup.
        progress.update(overall, description=escape(f"{title}: {step} {status}"))

    def on_part(index: int, count: int, done: float, total: float) -> None:
        if index not in parts:
            parts[index] = progress.add_task(f"  solve part {index}/{count} ({total:g} s limit)", total=total)
        progress.update(parts[index], completed=min(done, total))

    with progress:
        yield RunEvents(on_step=on_step, on_part=on_part,
                        on_notice=lambda text: err.print(f"note: {text}", markup=False))


def run_or_fail(job: str, month: str | None, actor: str | None, note: str | None = None,
                run_config: dict[str, Any] | None = None, ticket: Signed | None = None) -> str:
    """Run a job and follow it, with the run ticket given."""
    tags = {ACTOR_TAG: actor} if actor else {}
    if note:
        tags[NOTE_TAG] = note
    if ticket is not None:
        tags[TICKET_TAG] = ticket.encode()
    from batch_cli.ui_runs import run_through_ui  # deferred: start-up speed (see _progress)

    with _progress(f"{job}{f' for {month}' if month else ''}") as events:
        outcome = run_through_ui(job, month, tags, run_config, events, settings().dagster_home)
        if outcome is None:
            # Deferred: Dagster's import (2-3 s), paid only when this process starts its own code server.
            from batch_cli.runs import run_job

            outcome = run_job(job, month, tags, run_config, events)
    notes = "\n".join(f"note: {note}" for note in outcome.notes) or None
    if not outcome.success:
        raise CliError(outcome.error or f"{job} failed (run {outcome.run_id}).", notes)
    if notes:
        err.print(notes, markup=False)
    return outcome.run_id
