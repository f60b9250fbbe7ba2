"""Where a version stands in its month's history: final now, a withdrawn final, or proposed; and which run
computed it. Read from the control store's carried-out requests, so every view says the same."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from batch.approvals import DONE, KIND_FINALIZE, KIND_UNLOCK

STATE_FINAL = "final"
STATE_WITHDRAWN = "withdrawn final"
STATE_PROPOSED = "proposed"


@dataclass(frozen=True)
class Withdrawal:
    """One time a version was final and then withdrawn by an approved unlock."""

    version: int
    finalized_at: datetime | None
    finalize_request: str | None
    withdrawn_at: datetime | None
    unlock_request: str
    requested_by: str
    approved_by: str | None
    reason: str

    def sentence(self) -> str:
        return (f"version {self.version} was final from {when(self.finalized_at)} (request {self.finalize_request}) "
                f"and withdrawn {when(self.withdrawn_at)} by unlock request {self.unlock_request} of "
                f"{self.requested_by}, approved by {self.approved_by}: {self.reason}")

    def as_json(self) -> dict[str, Any]:
        return {"version": self.version, "finalized_at": _iso(self.finalized_at),
                "finalize_request": self.finalize_request, "withdrawn_at": _iso(self.withdrawn_at),
                "unlock_request": self.unlock_request, "requested_by": self.requested_by,
                "approved_by": self.approved_by, "reason": self.reason}


@dataclass(frozen=True)
class Standing:
    """A version's place in the month: the month's final version now, and the times this version was withdrawn."""

    month: str
    version: int
    final_now: int | None
    withdrawn: tuple[Withdrawal, ...]
    computed_by_run: str | None

    @property
    def state(self) -> str:
        if self.final_now == self.version:
            return STATE_FINAL
        return STATE_WITHDRAWN if self.withdrawn else STATE_PROPOSED

    def sentence(self) -> str:
        """The standing in one paragraph: state, each withdrawal (when, by which unlock), the final version now."""
        now = f"version {self.final_now} is final now" if self.final_now is not None else "no version is final now"
        if self.state == STATE_FINAL:
            head = f"Version {self.version} is the final version of {self.month} now."
        elif self.state == STATE_WITHDRAWN:
            head = f"Version {self.version} is a withdrawn final: {now}."
        else:
            head = f"Version {self.version} is proposed; {now}."
        return " ".join([head, *(f"Earlier, {w.sentence()}." for w in self.withdrawn)])

    def as_json(self) -> dict[str, Any]:
        return {"state": self.state, "final_now": self.final_now, "computed_by_run": self.computed_by_run,
                "withdrawn": [w.as_json() for w in self.withdrawn], "sentence": self.sentence()}


def withdrawals(requests: Iterable[Any]) -> list[Withdrawal]:
    """Every final withdrawn by a carried-out unlock, oldest first, with the finalization it undid."""
    done = sorted((r for r in requests if r.status == DONE and r.kind in (KIND_FINALIZE, KIND_UNLOCK)),
                  key=lambda r: _at(r.done_at))
    found, last_final = [], None
    for request in done:
        if request.kind == KIND_FINALIZE:
            last_final = request
            continue
        version = request.binding.get("final_version")
        undone = last_final if last_final is not None and last_final.version == version else None
        found.append(Withdrawal(version=int(version), finalized_at=undone.done_at if undone else None,
                                finalize_request=undone.id if undone else None, withdrawn_at=request.done_at,
                                unlock_request=request.id, requested_by=request.requested_by,
                                approved_by=request.decided_by, reason=request.text))
    return found


def version_standing(requests: Iterable[Any], month_row: dict[str, Any], version: int,
                     computed_by_run: str | None) -> Standing:
    """The standing of `version` from the month's requests and its control-store row."""
    final_now = month_row.get("final_version")  # set only while the month is finalized
    mine = tuple(w for w in withdrawals(requests) if w.version == int(version))
    return Standing(month=str(month_row["month"]), version=int(version),
                    final_now=int(final_now) if final_now is not None else None, withdrawn=mine,
                    computed_by_run=computed_by_run)


def ever_final(requests: Iterable[Any]) -> list[int]:
    """Versions that were finalized at least once."""
    return sorted({int(r.version) for r in requests if r.status == DONE and r.kind == KIND_FINALIZE})


def when(at: datetime | None) -> str:
    """A time as people read it: to the minute, in UTC."""
    if at is None:
        return "an unknown time"
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _iso(at: datetime | None) -> str | None:
    return None if at is None else (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat(timespec="seconds")


def _at(at: datetime | None) -> datetime:
    if at is None:
        return datetime.min.replace(tzinfo=UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)
