"""Four eyes as two people's acts: requests filed by an admin, decided by another person, an approver.

A request is bound to what it approves (month, version, the version's data checksum and input
fingerprint, or the roles file's checksum); it expires, and a newer run makes it stale. These are
the rules; the control store applies them inside its serialized write transactions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from batch.errors import ControlError
from batch.identity import Signed
from batch.roles import RoleError, Roles

KIND_FINALIZE = "finalize"
KIND_UNLOCK = "unlock"
KIND_ROLES = "roles"
KINDS = (KIND_FINALIZE, KIND_UNLOCK, KIND_ROLES)

PENDING = "pending"        # filed, waiting for an approver
APPROVED = "approved"      # approved; the finalize/unlock job carries it out
DONE = "done"              # carried out
REJECTED = "rejected"
EXPIRED = "expired"
STALE = "stale"            # a newer run (or unlock, or finalization) overtook it
OPEN_STATUSES = (PENDING, APPROVED)

REQUEST_TTL = timedelta(hours=72)
# What a request's signed action is called, by kind (the audit log's action names).
REQUEST_ACTION = "request"
APPROVE_ACTION = "approve"
REJECT_ACTION = "reject"
# `batch-admin repair` issues a new run ticket to an approved request whose run did not finish.
TICKET_ISSUED_ACTION = "ticket_issued"


def data_checksum(manifest: Mapping[str, Any]) -> str:
    """One checksum of a version's data: over the sha256 of each of its files, in name order."""
    files = manifest.get("files") or {}
    return hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()


def finalize_binding(version: int, manifest: Mapping[str, Any], input_fingerprint: str | None,
                     versions_seen: int) -> dict[str, Any]:
    """What a finalize request approves: this version, these bytes, these inputs, no newer run."""
    return {"version": int(version), "data_checksum": data_checksum(manifest),
            "input_fingerprint": input_fingerprint, "versions_seen": int(versions_seen)}


def binding_public(binding: Mapping[str, Any]) -> dict[str, Any]:
    """The binding as shown and signed (the roles file's full text stays in the store)."""
    return {k: v for k, v in binding.items() if k != "content"}


@dataclass(frozen=True)
class Request:
    """One request as stored."""

    id: str
    kind: str
    month: str | None
    version: int | None
    binding: dict[str, Any]
    text: str
    requested_by: str
    requested_at: datetime
    expires_at: datetime
    status: str
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_text: str | None = None
    run_id: str | None = None
    done_at: datetime | None = None

    def binding_public(self) -> dict[str, Any]:
        return binding_public(self.binding)

    def effective_status(self, now: datetime) -> str:
        return EXPIRED if self.status == PENDING and now >= self.expires_at else self.status

    def what(self) -> str:
        """What the request asks for, e.g. 'finalize 2026-12 version 2'."""
        return {KIND_FINALIZE: f"finalize {self.month} version {self.version}",
                KIND_UNLOCK: f"unlock {self.month}",
                KIND_ROLES: f"accept roles file {self.binding.get('source')}"}[self.kind]

    def describe(self) -> str:
        return f"request {self.id} ({self.what()}, by {self.requested_by})"

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "month": self.month, "version": self.version,
                "binding": self.binding_public(), "text": self.text,
                "requested_by": self.requested_by, "requested_at": self.requested_at,
                "expires_at": self.expires_at, "status": self.effective_status(now),
                "decided_by": self.decided_by, "decided_at": self.decided_at,
                "decision_text": self.decision_text, "run_id": self.run_id, "done_at": self.done_at}


def check_filing(roles: Roles, signed: Signed) -> tuple[str, str]:
    """A request's kind and text, once its filer may file it."""
    kind = str(signed.details.get("kind") or "")
    if kind not in KINDS:
        raise ControlError(f"A request is one of {', '.join(KINDS)}, not {kind!r}.")
    text = str(signed.details.get("text") or "").strip()
    if not text:
        word = "--reason" if kind == KIND_UNLOCK else "--note"
        raise ControlError(f"A {kind} request needs a non-empty {word} saying why.")
    roles.require_admin(signed.actor, f"request to {kind}" + (f" {signed.month}" if signed.month else ""))
    return kind, text


def check_decision(roles: Roles, request: Request, signed: Signed, now: datetime) -> None:
    """Refuse a decision that is not another person's, an approver's, on a pending, unexpired request
    whose binding is the one they saw."""
    verb = "approve" if signed.action == APPROVE_ACTION else "reject"
    if signed.actor == request.requested_by:
        raise RoleError(f"{signed.actor} filed {request.describe()} and may not {verb} it: four eyes means "
                        f"another person, with the approver role, decides.")
    if signed.actor not in roles.approvers:
        raise RoleError(f"{signed.actor} does not hold the approver role in {roles.source} and may not {verb} "
                        f"{request.describe()}.")
    status = request.effective_status(now)
    if status != PENDING:
        by = f" by {request.decided_by}" if request.decided_by else ""
        repair = (f"; if the run that carries it out did not finish, `batch-admin repair {request.month}` carries "
                  f"it out" if status == APPROVED and request.month else "")
        raise ControlError(f"The {request.describe()} is {status}{by}; only a pending request can be decided{repair}.")
    if signed.action == APPROVE_ACTION and dict(signed.details.get("binding") or {}) != request.binding_public():
        raise ControlError(f"The {request.describe()} is not what {signed.actor} was shown (its binding "
                           f"differs); look at it again with `batch-admin requests`.")
