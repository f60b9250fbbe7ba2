"""The requests room (four eyes): finalize, unlock and roles requests, filed by an admin, decided by
another person, and carried out once by their job."""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from batch import approvals
from batch.approvals import Request
from batch.errors import ControlError
from batch.identity import Signed
from batch.lifecycle import PHASE_FINALIZED, PHASE_PROPOSED
from batch.roles import RoleError, Roles
from resources.control_store.lock_room import LockRoom, _lease_of
from resources.control_store.plumbing import _aware, _dumps, utcnow
from resources.control_store.tables import (
    leases,
    locks,
    months,
    requests,
    roles_accepted,
    versions,
)


class RequestRoom(LockRoom):
    """Requests under four eyes: filed, decided, carried out once."""

    def _request(self, conn: Connection, request_id: str) -> Request:
        row = conn.execute(sa.select(requests).where(requests.c.id == str(request_id))).mappings().first()
        if row is None:
            raise ControlError(f"There is no request {request_id!r}; `batch-admin requests` lists them.")
        return _request_of(dict(row))

    def request(self, request_id: str) -> Request:
        with self.read() as conn:
            return self._request(conn, request_id)

    def requests(self, month: str | None = None) -> list[Request]:
        query = sa.select(requests).order_by(requests.c.requested_at)
        if month is not None:
            query = query.where(requests.c.month == month)
        with self.read() as conn:
            return [_request_of(dict(r)) for r in conn.execute(query).mappings()]

    def file_request(self, signed: Signed) -> Request:
        """File a finalize, unlock or roles request (details: kind, text, binding), signed by an admin."""
        kind = signed.details.get("kind")
        with self._signed(signed, approvals.REQUEST_ACTION, signed.month, gate=kind != approvals.KIND_ROLES) \
                as (conn, roles):
            kind, text = approvals.check_filing(roles, signed)
            binding = dict(signed.details.get("binding") or {})
            month, version = signed.month, None
            if kind == approvals.KIND_ROLES:
                if self.roles_file is None:
                    raise ControlError("No roles file is configured to accept.")
                proposed = self._no_demo_keys(Roles.load(self.roles_file))
                expected = {"checksum": proposed.checksum, "source": proposed.source}
                if binding != expected:
                    raise ControlError(f"The roles file {self.roles_file} changed while the request was made; "
                                       f"run the command again.")
                if proposed.checksum == roles.checksum:
                    raise ControlError(f"The roles file {self.roles_file} is the accepted one; nothing to accept.")
                binding["content"] = proposed.text
            else:
                if month is None:
                    raise ControlError(f"A {kind} request names a month.")
                row = self._month_row(conn, month)
                if kind == approvals.KIND_FINALIZE:
                    self._check_not_finalized(row)
                    self._check_lock(conn, month, signed.actor, "finalize")
                    version = int(binding.get("version") or 0)
                    self._check_binding(conn, month, binding)
                else:
                    if row["phase"] != PHASE_FINALIZED:
                        raise ControlError(f"Month {month} is not finalized (phase {row['phase']}); there is nothing "
                                           f"to unlock.")
                    if binding != {"final_version": row["final_version"]}:
                        raise ControlError(f"Month {month}'s final version is {row['final_version']}, not "
                                           f"{binding.get('final_version')}; run the command again.")
                    version = row["final_version"]
            taken = conn.execute(sa.select(requests.c.id).where(sa.and_(
                requests.c.kind == kind, requests.c.month.is_(None) if month is None else requests.c.month == month,
                requests.c.status.in_(approvals.OPEN_STATUSES), requests.c.expires_at > utcnow()))).scalar()
            if taken is not None:
                raise ControlError(f"Request {taken} to {kind}{' ' + month if month else ''} is still open; an approver "
                                   f"decides it (`batch-admin approve|reject {taken}`) before another is filed.")
            now = utcnow()
            new_id = secrets.token_hex(4)
            conn.execute(requests.insert().values(
                id=new_id, kind=kind, month=month, version=version, binding_json=_dumps(binding), text=text,
                requested_by=signed.actor, requested_at=now, expires_at=now + approvals.REQUEST_TTL,
                status=approvals.PENDING))
            self._append_audit(conn, month, signed.actor, approvals.REQUEST_ACTION,
                               {"request_id": new_id, "kind": kind, "version": version, "text": text,
                                "binding": approvals.binding_public(binding)}, signed)
            return self._request(conn, new_id)

    def _check_binding(self, conn: Connection, month: str, binding: dict[str, Any]) -> None:
        """A finalize binding still holds: its version exists with its inputs and no run came after."""
        version = int(binding.get("version") or 0)
        row = conn.execute(sa.select(versions.c.input_fingerprint).where(sa.and_(
            versions.c.month == month, versions.c.version == version))).first()
        if row is None:
            raise ControlError(f"Month {month} has no version {version} to finalize.")
        if row[0] != binding.get("input_fingerprint"):
            raise ControlError(f"Version {version} of {month} was made from other inputs than the request names.")
        count = conn.execute(sa.select(sa.func.count()).select_from(versions).where(versions.c.month == month)).scalar()
        if count != binding.get("versions_seen"):
            raise ControlError(f"Month {month} has had a new run since (now {count} versions); a request approves "
                               f"what its filer saw, so file a new one.")

    def check_finalize_binding(self, request: Request) -> None:
        """Refuse when a finalize request's version, inputs or run count changed since it was filed."""
        with self.read() as conn:
            self._check_binding(conn, str(request.month), request.binding)

    def decide_request(self, signed: Signed) -> Request:
        """Approve or reject a request (details: request_id, binding | reason), signed by an approver who
        is not its filer. An approved roles change takes effect at once; an approved finalize or unlock
        is carried out by its job. One decision per request, whoever comes first."""
        request_id = str(signed.details.get("request_id") or "")
        if signed.action not in (approvals.APPROVE_ACTION, approvals.REJECT_ACTION):
            raise ControlError(f"A decision is approve or reject, not {signed.action}.")
        with self.read() as conn:
            first = self._request(conn, request_id)
        with self._signed(signed, signed.action, first.month, gate=first.kind != approvals.KIND_ROLES) \
                as (conn, roles):
            req = self._request(conn, request_id)
            now = utcnow()
            approvals.check_decision(roles, req, signed, now)
            if signed.action == approvals.REJECT_ACTION:
                reason = str(signed.details.get("reason") or "").strip()
                if not reason:
                    raise ControlError("A rejection needs a non-empty --reason.")
                status, text = approvals.REJECTED, reason
            else:
                status, text = approvals.APPROVED, None
                if req.kind == approvals.KIND_FINALIZE and req.month is not None:
                    row = self._month_row(conn, req.month)
                    self._check_not_finalized(row)
                    self._check_binding(conn, req.month, req.binding)
                    held = conn.execute(sa.select(leases).where(leases.c.month == req.month)).mappings().first()
                    if held is not None and not _lease_of(held).dead():
                        raise ControlError(f"Run {held['run_id']} of {req.month} is executing; approve after it ends "
                                           f"(a new version would make this request stale).")
                if req.kind == approvals.KIND_UNLOCK and req.month is not None:
                    row = self._month_row(conn, req.month)
                    if row["phase"] != PHASE_FINALIZED or row["final_version"] != req.binding.get("final_version"):
                        raise ControlError(f"Month {req.month} is no longer finalized at version "
                                           f"{req.binding.get('final_version')}; the request is overtaken.")
                if req.kind == approvals.KIND_ROLES:
                    status = approvals.DONE
            changed = conn.execute(requests.update().where(sa.and_(
                requests.c.id == req.id, requests.c.status == approvals.PENDING)).values(
                status=status, decided_by=signed.actor, decided_at=now, decision_text=text,
                done_at=now if status == approvals.DONE else None)).rowcount
            if changed != 1:
                raise ControlError(f"The {req.describe()} was decided by someone else meanwhile.")
            if req.kind == approvals.KIND_ROLES and status == approvals.DONE:
                proposed = self._no_demo_keys(Roles.parse(req.binding["content"], str(req.binding.get("source"))))
                conn.execute(roles_accepted.insert().values(
                    checksum=proposed.checksum, content=proposed.text, source=proposed.source, accepted_at=now,
                    accepted_by=req.requested_by, approved_by=signed.actor))
            self._append_audit(conn, req.month, signed.actor, signed.action,
                               {"request_id": req.id, "kind": req.kind, "version": req.version,
                                "requested_by": req.requested_by, "reason": signed.details.get("reason"),
                                "binding": req.binding_public(),
                                "ticket_nonce": signed.details.get("ticket_nonce")}, signed)
            if status == approvals.REJECTED:
                self._add_alert(conn, req.month, "request_rejected", "warning",
                                f"{signed.actor} rejected {req.describe()}: {text}",
                                {"request_id": req.id, "kind": req.kind, "rejected_by": signed.actor},
                                f"request_rejected:{req.id}")
            return self._request(conn, req.id)

    def approved_request(self, request_id: str, kind: str, month: str) -> Request:
        """The approved request a finalize or unlock job carries out; refused, before anything is written,
        when it is not approved, carried out already, to do something else, or overtaken."""
        with self.read() as conn:
            req = self._request(conn, request_id)
            overtaken = self._overtaken(conn, req)
        if req.kind != kind or req.month != month:
            raise ControlError(f"Request {request_id} is to {req.kind} {req.month}, not to {kind} {month}.")
        if req.status != approvals.APPROVED:
            status = req.effective_status(utcnow())
            if status == approvals.DONE:
                raise ControlError(f"The {req.describe()} was carried out already by run {req.run_id}; a request is "
                                   f"carried out once.")
            hint = f" it needs an approver's `batch-admin approve {req.id}`" if status == approvals.PENDING else ""
            raise ControlError(f"The {req.describe()} is {status}, not approved;{hint or ' it cannot be carried out.'}")
        if overtaken is not None:
            self.mark_stale(req.id, overtaken)
            raise ControlError(f"The {req.describe()} is overtaken: {overtaken}.")
        return req

    def _overtaken(self, conn: Connection, req: Request) -> str | None:
        """Why a request is no longer its month's current one: a later finalize or unlock was carried out."""
        later = conn.execute(sa.select(requests.c.id, requests.c.kind).where(sa.and_(
            requests.c.month == req.month, requests.c.id != req.id, requests.c.status == approvals.DONE,
            requests.c.kind.in_((approvals.KIND_FINALIZE, approvals.KIND_UNLOCK)),
            requests.c.done_at > (req.decided_at or req.requested_at)))).first()
        return None if later is None else f"request {later.id} ({later.kind}) was carried out after it was approved"

    def issue_ticket(self, signed: Signed) -> None:
        """A new run ticket (details: request_id, ticket_nonce) for an approved request whose run did not
        finish, signed by an approver (`batch-admin repair`); the earlier ticket no longer serves."""
        with self._signed(signed, approvals.TICKET_ISSUED_ACTION, signed.month) as (conn, roles):
            req = self._request(conn, str(signed.details.get("request_id")))
            if signed.actor not in roles.approvers:
                raise RoleError(f"{signed.actor} does not hold the approver role in {roles.source} and may not issue "
                                f"a run ticket for {req.describe()}.")
            if req.status != approvals.APPROVED or req.month != signed.month:
                raise ControlError(f"The {req.describe()} is {req.status}: only an approved request of "
                                   f"{signed.month} gets a new run ticket.")
            self._append_audit(conn, req.month, signed.actor, signed.action, dict(signed.details), signed)

    def mark_stale(self, request_id: str, why: str) -> None:
        """An approved request that can no longer be carried out as approved."""
        with self.write() as conn:
            req = self._request(conn, request_id)
            if req.status != approvals.APPROVED:
                return
            conn.execute(requests.update().where(requests.c.id == req.id).values(
                status=approvals.STALE, decision_text=why))
            self._append_audit(conn, req.month, None, "request_stale", {"request_id": req.id, "why": why})
            self._add_alert(conn, req.month, "request_stale", "warning", f"The {req.describe()} is stale: {why}",
                            {"request_id": req.id}, f"request_stale:{req.id}")

    def expire_requests(self, now: datetime | None = None) -> list[Request]:
        """Mark pending requests past their expiry as expired, with an alert each; returns them."""
        now = now or utcnow()
        expired = []
        with self.write() as conn:
            for row in conn.execute(sa.select(requests).where(sa.and_(
                    requests.c.status == approvals.PENDING, requests.c.expires_at <= now))).mappings().all():
                req = _request_of(dict(row))
                conn.execute(requests.update().where(requests.c.id == req.id).values(status=approvals.EXPIRED))
                self._append_audit(conn, req.month, None, "request_expired", {"request_id": req.id})
                self._add_alert(conn, req.month, "request_expired", "warning",
                                f"The {req.describe()} expired at {req.expires_at.isoformat(timespec='minutes')} "
                                f"without a decision.", {"request_id": req.id}, f"request_expired:{req.id}")
                expired.append(req)
        return expired

    def complete_finalize(self, request_id: str, run_id: str) -> dict[str, Any]:
        """Carry out an approved finalize request: the final lock, in one transaction, once the
        official export is in place and verified (the caller's part). Once per request."""
        with self.write() as conn:
            req = self._request(conn, request_id)
            month, version = str(req.month), int(req.version or 0)
            if req.status != approvals.APPROVED or req.kind != approvals.KIND_FINALIZE:
                raise ControlError(f"The {req.describe()} is {req.status}, not an approved finalization.")
            if (overtaken := self._overtaken(conn, req)) is not None:
                raise ControlError(f"The {req.describe()} is overtaken: {overtaken}.")
            row = self._month_row(conn, month)
            self._check_not_finalized(row)
            self._check_binding(conn, month, req.binding)
            now = utcnow()
            conn.execute(months.update().where(sa.and_(
                months.c.month == month, months.c.phase != PHASE_FINALIZED)).values(
                phase=PHASE_FINALIZED, final_version=version, finalized_by=req.requested_by,
                approved_by=req.decided_by, finalized_at=now, updated_at=now))
            conn.execute(versions.update().where(sa.and_(
                versions.c.month == month, versions.c.version == version)).values(status="final"))
            conn.execute(locks.delete().where(locks.c.month == month))
            conn.execute(requests.update().where(requests.c.id == req.id).values(
                status=approvals.DONE, run_id=run_id, done_at=now))
            self._append_audit(conn, month, req.decided_by, "finalize",
                               {"version": version, "finalized_by": req.requested_by, "approver": req.decided_by,
                                "request_id": req.id, "run_id": run_id})
            return dict(self._month_row(conn, month))

    def complete_unlock(self, request_id: str, run_id: str) -> Request:
        """Carry out an approved unlock request: the month back to proposed. Once per request."""
        with self.write() as conn:
            req = self._request(conn, request_id)
            month = str(req.month)
            if req.status != approvals.APPROVED or req.kind != approvals.KIND_UNLOCK:
                raise ControlError(f"The {req.describe()} is {req.status}, not an approved unlock.")
            if (overtaken := self._overtaken(conn, req)) is not None:
                raise ControlError(f"The {req.describe()} is overtaken: {overtaken}.")
            row = self._month_row(conn, month)
            if row["phase"] != PHASE_FINALIZED or row["final_version"] != req.binding.get("final_version"):
                raise ControlError(f"Month {month} is no longer finalized at version "
                                   f"{req.binding.get('final_version')}; the request is overtaken.")
            conn.execute(versions.update().where(sa.and_(
                versions.c.month == month, versions.c.version == row["final_version"])).values(
                status="proposed"))
            self._set_phase(conn, month, PHASE_PROPOSED, final_version=None, finalized_by=None,
                            approved_by=None, finalized_at=None)
            now = utcnow()
            conn.execute(requests.update().where(requests.c.id == req.id).values(
                status=approvals.DONE, run_id=run_id, done_at=now))
            self._append_audit(conn, month, req.decided_by, "unlock",
                               {"requested_by": req.requested_by, "approver": req.decided_by, "reason": req.text,
                                "was_final_version": row["final_version"], "request_id": req.id, "run_id": run_id})
            return self._request(conn, req.id)


def _request_of(row: dict[str, Any]) -> Request:
    return Request(id=row["id"], kind=row["kind"], month=row["month"], version=row["version"],
                   binding=json.loads(row["binding_json"]), text=row["text"], requested_by=row["requested_by"],
                   requested_at=_aware(row["requested_at"]), expires_at=_aware(row["expires_at"]),
                   status=row["status"], decided_by=row["decided_by"], decided_at=_aware(row["decided_at"]),
                   decision_text=row["decision_text"], run_id=row["run_id"], done_at=_aware(row["done_at"]))
