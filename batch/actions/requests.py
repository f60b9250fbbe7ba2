"""Four eyes: file a finalize, unlock or roles request; approve or reject one (and which job follows)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from batch import approvals
from batch.actions.checks import expect, may
from batch.actions.outcome import FollowUp, Outcome
from batch.approvals import Request
from batch.errors import ControlError
from batch.identity import IdentityError, Signed
from batch.lifecycle import FINALIZE_JOB, UNLOCK_JOB
from batch.ports import ControlPort, VersionFiles
from batch.roles import Roles
from batch.times import local

# The job, and its op, that carries out an approved request, by kind (a roles change takes effect at once).
REQUEST_JOBS = {approvals.KIND_FINALIZE: (FINALIZE_JOB, "final_allocation"),
                approvals.KIND_UNLOCK: (UNLOCK_JOB, "unlock_finalized_month")}


def finalize_details(store: ControlPort, files: VersionFiles, month: str, version: int, note: str) -> dict[str, Any]:
    """What a finalize request signs: the version, bound to its bytes, its inputs and the runs seen so far."""
    rows = {v["version"]: v for v in store.versions(month)}
    if version not in rows or version not in files.versions(month):
        raise ControlError(f"Month {month} has no version {version} to finalize"
                           f"{f' (versions: {min(rows)}..{max(rows)})' if rows else ''}.")
    binding = approvals.finalize_binding(version, files.manifest(month, version), rows[version]["input_fingerprint"],
                                         len(rows))
    return {"kind": approvals.KIND_FINALIZE, "text": note, "binding": binding}


def unlock_details(store: ControlPort, month: str, reason: str) -> dict[str, Any]:
    """What an unlock request signs: the final version it withdraws."""
    return {"kind": approvals.KIND_UNLOCK, "text": reason, "binding": {"final_version": store.month(month)["final_version"]}}


def roles_details(proposed: Roles, note: str) -> dict[str, Any]:
    """What a request to accept a changed roles file signs: that file's checksum."""
    return {"kind": approvals.KIND_ROLES, "text": note, "binding": {"checksum": proposed.checksum, "source": proposed.source}}


# The alert that announces a new request to its approvers (the alert outbox delivers it to the webhook).
RULE_REQUEST_FILED = "request_filed"


def approval_link(view_url: str, request: Request) -> str:
    """The request's place on the admin view's approvals page."""
    return f"{view_url.rstrip('/')}/approvals#request-{request.id}"


def announce(store: ControlPort, request: Request, view_url: str) -> None:
    """Tell the approvers: an alert with the link to the request's approval page, delivered through the
    alert outbox (log and webhook) like every alert, once per request."""
    link = approval_link(view_url, request)
    message = (f"{request.what()} by {request.requested_by} awaits another person with the approver role until "
               f"{local(request.expires_at)}: {link}")
    store.add_alert(request.month, RULE_REQUEST_FILED, "info", message,
                    {"request_id": request.id, "kind": request.kind, "requested_by": request.requested_by,
                     "expires_at": request.expires_at.isoformat(), "approval_url": link},
                    f"{RULE_REQUEST_FILED}:{request.id}")


def file_request(store: ControlPort, signed: Signed, view_url: str) -> Outcome:
    """File a finalize, unlock or roles request (details from the three functions above), signed by an admin,
    and announce it to the approvers with the link to its approval page on the view at `view_url`."""
    kind = str(signed.details.get("kind") or "")
    month = expect(signed, approvals.REQUEST_ACTION, month_required=kind != approvals.KIND_ROLES) or None
    rule = kind if kind in approvals.KINDS else approvals.KIND_FINALIZE
    who = may(store, rule, signed.actor, month, gate=kind != approvals.KIND_ROLES)
    if kind == approvals.KIND_FINALIZE and month:
        store.guard_write(month, who, "finalize")  # the final lock and a lock for others, before anything is filed
    request = store.file_request(signed)
    announce(store, request, view_url)
    return Outcome(approvals.REQUEST_ACTION, who, month, filed_message(request), request=request)


def filed_message(request: Request) -> str:
    return (f"Request {request.id} filed: {request.what()}, by {request.requested_by}. It takes effect when "
            f"another person with the approver role runs `batch-admin approve {request.id}` (or rejects it) before "
            f"{local(request.expires_at)}.")


def ticket_job(request: Request) -> str | None:
    """The job whose single run ticket an approval of `request` issues (None: the approval takes effect at once)."""
    job = REQUEST_JOBS.get(request.kind)
    return job[0] if job else None


def approval_details(request: Request, ticket: Signed | None) -> dict[str, Any]:
    """What an approval signs: the request, what its approver was shown, and the nonce of the ticket it issues."""
    return {"request_id": request.id, "binding": request.binding_public(),
            **({"ticket_nonce": ticket.nonce} if ticket is not None else {})}


def approve(store: ControlPort, signed: Signed, *, ticket: Signed | None = None,
            now: datetime | None = None) -> Outcome:
    """Approve a request (another person, an approver); a finalize or unlock is then carried out by the job
    in `Outcome.follows`, with the one ticket this approval issues (`ticket`, made for `ticket_job`)."""
    request = _decided(store, signed, approvals.APPROVE_ACTION, now)
    job = REQUEST_JOBS.get(request.kind)
    if job is not None:
        _check_ticket(request, signed, ticket, job[0])
    elif ticket is not None:
        raise ControlError(f"The {request.describe()} takes effect when approved; it issues no run ticket.")
    decided = store.decide_request(signed)
    who = signed.actor
    follows = _carried_out_by(decided, ticket) if ticket is not None else None
    if decided.kind == approvals.KIND_FINALIZE:
        message = (f"{decided.month} finalized: version {decided.version}, requested by {decided.requested_by}, "
                   f"approved by {who}")
    elif decided.kind == approvals.KIND_UNLOCK:
        message = (f"{decided.month} unlocked (requested by {decided.requested_by}, approved by {who}); back to "
                   f"proposed, its official copy withdrawn.")
    else:
        message = (f"The roles file {decided.binding.get('source')} is accepted (requested by "
                   f"{decided.requested_by}, approved by {who}).")
    return Outcome(approvals.APPROVE_ACTION, who, decided.month, message, follows=follows, request=decided)


def reject(store: ControlPort, signed: Signed, *, now: datetime | None = None) -> Outcome:
    """Reject a request (another person, an approver; details: request_id, reason); raises an alert."""
    request = _decided(store, signed, approvals.REJECT_ACTION, now)
    if not str(signed.details.get("reason") or "").strip():
        raise ControlError("A rejection needs a non-empty --reason.")
    decided = store.decide_request(signed)
    return Outcome(approvals.REJECT_ACTION, signed.actor, request.month,
                   f"Request {decided.id} rejected by {signed.actor}.", request=decided)


def _decided(store: ControlPort, signed: Signed, action: str, now: datetime | None) -> Request:
    """The request a decision names, once the decision is another person's, an approver's, on a pending
    request (four eyes: checked here first, and again in the store's write transaction)."""
    expect(signed, action, month_required=False)
    request = store.request(str(signed.details.get("request_id") or ""))
    roles = store.roles(gate=request.kind != approvals.KIND_ROLES)
    approvals.check_decision(roles, request, signed, now or datetime.now(UTC))
    return request


def _check_ticket(request: Request, signed: Signed, ticket: Signed | None, job: str) -> None:
    """The ticket an approval issues: the approver's, for this request's job and month, its nonce signed."""
    if ticket is None:
        raise ControlError(f"Approving {request.describe()} issues the run ticket of {job} that carries it out; "
                           f"none was given.")
    details = ticket.details
    if (ticket.action != "ticket" or ticket.actor != signed.actor or details.get("job") != job
            or details.get("request_id") != request.id or list(details.get("months") or []) != [request.month]
            or signed.details.get("ticket_nonce") != ticket.nonce):
        raise IdentityError(f"The run ticket given with the approval of {request.describe()} is not the one "
                            f"{signed.actor} signed for {job} of {request.month} with it: refused.")


def reissue(store: ControlPort, signed: Signed, *, ticket: Signed) -> Outcome:
    """Issue a new run ticket to an approved request whose run did not finish (`batch-admin repair`; details:
    request_id, ticket_nonce); its job follows, as after the approval."""
    expect(signed, approvals.TICKET_ISSUED_ACTION)
    request = store.request(str(signed.details.get("request_id") or ""))
    job = REQUEST_JOBS.get(request.kind)
    if job is None:
        raise ControlError(f"The {request.describe()} is carried out by no job; it needs no run ticket.")
    _check_ticket(request, signed, ticket, job[0])
    store.issue_ticket(signed)
    return Outcome(approvals.TICKET_ISSUED_ACTION, signed.actor, request.month,
                   f"the approved {request.describe()} was carried out, with a new run ticket issued by "
                   f"{signed.actor}", follows=_carried_out_by(request, ticket), request=request)


def _carried_out_by(request: Request, ticket: Signed) -> FollowUp:
    """The run that carries out an approved finalize (of its month) or unlock (of no partition) request."""
    job, op = REQUEST_JOBS[request.kind]
    return FollowUp(job, request.month if job == FINALIZE_JOB else None, ticket, ticket.actor,
                    run_config={"ops": {op: {"config": {"request_id": request.id}}}})
