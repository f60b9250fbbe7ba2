"""What an action returns: what changed, the sentence that says so, and the Dagster job that follows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batch.approvals import Request
from batch.identity import TICKET_TAG, Signed
from batch.ports import LockView
from batch.roles import ACTOR_TAG, NOTE_TAG


@dataclass(frozen=True)
class FollowUp:
    """A run the client submits next (the core never imports Dagster): job, month, ticket, run config."""

    job: str
    month: str | None
    ticket: Signed
    actor: str
    note: str | None = None
    run_config: dict[str, Any] = field(default_factory=dict)

    def tags(self) -> dict[str, str]:
        """The run's tags: who, why and the ticket (clients add the partition's tags)."""
        tags = {ACTOR_TAG: self.actor, TICKET_TAG: self.ticket.encode()}
        if self.note:
            tags[NOTE_TAG] = self.note
        return tags


@dataclass(frozen=True)
class Outcome:
    """One action done: who did what to which month, one sentence for people, and what follows."""

    action: str
    actor: str
    month: str | None
    message: str
    follows: FollowUp | None = None
    request: Request | None = None
    lock: LockView | None = None
    params: dict[str, Any] | None = None
