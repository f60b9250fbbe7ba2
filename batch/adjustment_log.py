"""The pins and exclusions in force: the month's adjustment log folded, and the rules of adding to it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from batch.errors import ControlError

KIND_PIN = "pin"
KIND_EXCLUDE = "exclude"
KIND_UNPIN = "unpin"
KIND_INCLUDE = "include"
KIND_CLEAR = "clear"
KINDS = (KIND_PIN, KIND_EXCLUDE, KIND_UNPIN, KIND_INCLUDE, KIND_CLEAR)
# A clear names no request; the log's request_id column is not null, so it records this one.
ALL_REQUESTS = "*"


@dataclass(frozen=True)
class Adjustment:
    """One pin or exclusion in force: what, who set it, when and why."""

    request_id: str
    resource_id: str | None
    actor: str
    at: datetime
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "resource_id": self.resource_id, "actor": self.actor,
                "at": self.at.isoformat(timespec="seconds"), "note": self.note}


@dataclass
class InForce:
    """The month's pins and exclusions in force, by request."""

    pins: dict[str, Adjustment] = field(default_factory=dict)
    exclusions: dict[str, Adjustment] = field(default_factory=dict)

    def pinned(self) -> dict[str, str]:
        """Request -> resource, as a run takes them."""
        return {req: str(adj.resource_id) for req, adj in self.pins.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"pins": [a.to_dict() for a in sorted(self.pins.values(), key=lambda a: a.request_id)],
                "exclusions": [a.to_dict() for a in sorted(self.exclusions.values(), key=lambda a: a.request_id)]}


def in_force(log: Iterable[Mapping[str, Any]]) -> InForce:
    """Fold the log (rows in the order they were recorded): a request's latest adjustment wins; an unpin or
    include takes its pin or exclusion back; a clear takes back every one before it."""
    state = InForce()
    for row in log:
        kind, req = row["kind"], row["request_id"]
        if kind == KIND_CLEAR:
            state = InForce()
            continue
        state.pins.pop(req, None)
        state.exclusions.pop(req, None)
        entry = Adjustment(req, row.get("resource_id"), row["actor"], row["created_at"], row["note"])
        if kind == KIND_PIN:
            state.pins[req] = entry
        elif kind == KIND_EXCLUDE:
            state.exclusions[req] = entry
    return state


def check_change(state: InForce, kind: str, request_id: str | None, resource_id: str | None, note: str | None) -> str:
    """The request id to record for this change, or ControlError: an unknown kind, no note, a pin without a
    resource, or an undo of a pin or exclusion that is not in force."""
    if kind not in KINDS:
        raise ControlError(f"Adjustment kind must be one of {', '.join(KINDS)}, not {kind!r}.")
    if not note or not str(note).strip():
        raise ControlError("An adjustment needs a non-empty --note saying why.")
    if kind == KIND_CLEAR:
        if not state.pins and not state.exclusions:
            raise ControlError("There are no pins or exclusions to clear.")
        return ALL_REQUESTS
    if not request_id or not str(request_id).strip():
        raise ControlError(f"An adjustment of kind {kind} needs a request id.")
    if kind == KIND_PIN and not resource_id:
        raise ControlError(f"A pin of {request_id} needs a resource id (REQ=RES).")
    if kind == KIND_UNPIN and request_id not in state.pins:
        other = " (it is excluded: --include takes that back)" if request_id in state.exclusions else ""
        raise ControlError(f"Request {request_id} is not pinned{other}; there is no pin to take back.")
    if kind == KIND_INCLUDE and request_id not in state.exclusions:
        other = " (it is pinned: --unpin takes that back)" if request_id in state.pins else ""
        raise ControlError(f"Request {request_id} is not excluded{other}; there is no exclusion to take back.")
    return str(request_id)


def describe(details: Mapping[str, Any]) -> str:
    """One readable phrase for an adjustment's audit details."""
    kind, req = details.get("kind"), details.get("request_id")
    what = {KIND_PIN: f"pinned {req} to {details.get('resource_id')}", KIND_EXCLUDE: f"excluded {req}",
            KIND_UNPIN: f"unpinned {req}", KIND_INCLUDE: f"included {req} again",
            KIND_CLEAR: "cleared every pin and exclusion"}.get(str(kind), f"{kind} {req}")
    return what + (f"; note: {details['note']}" if details.get("note") else "")

