"""The run tickets room: one run per signed ticket and month, a re-execution taking it over once."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from batch import approvals
from batch.errors import ControlError
from batch.identity import MAX_TICKET_MINUTES, IdentityError, Signed
from resources.control_store.key_room import KeyRoom
from resources.control_store.plumbing import _dumps, utcnow
from resources.control_store.tables import (
    audit,
    tickets,
)


class TicketRoom(KeyRoom):
    """Run tickets: who a run acts as, one run per ticket and month."""

    def claim_ticket(self, ticket_text: str | None, job: str, month: str, run_id: str,
                     system_allowed: bool, reexecution_of: str | None = None, request_id: str | None = None) -> str:
        """The identity a run acts as: its run ticket's signer (one run per ticket and month; a
        re-execution takes the ticket over from `reexecution_of`, its parent run as the instance knows
        it, only while that run holds it), or, for a planning run without a ticket, the declared system
        identity. With `request_id`: the ticket that request's approval issued, and no other."""
        if not ticket_text:
            roles = self.roles()
            if system_allowed and roles.system:
                return sorted(roles.system)[0]
            message = (f"Run {run_id} of {job} for {month} carries no run ticket and is refused before writing "
                       f"anything: make one with `batch-admin ticket {month} --job {job} --actor YOU` and add it "
                       f"as the run's tag batch_admin/ticket, or start the run with batch-admin.")
            if request_id is not None:
                message = (f"Run {run_id} of {job} carries no run ticket and is refused: request {request_id} is "
                           f"carried out only with the ticket its approval issued (`batch-admin repair {month}` "
                           f"issues a new one to finish a request left half done).")
            self.refused(None, "run", month, message)
            raise IdentityError(message)
        try:
            signed = Signed.decode(ticket_text)
        except IdentityError as exc:
            self.refused(None, "run", month, str(exc))
            raise
        with self._signed(signed, "ticket", None, fresh=False) as (conn, roles):
            d = signed.details
            try:
                expires = datetime.fromisoformat(str(d.get("expires_at")))
            except ValueError:
                raise IdentityError("The run ticket has no valid expiry.") from None
            if expires - signed.signed_at > timedelta(minutes=MAX_TICKET_MINUTES):
                raise IdentityError(f"The run ticket is valid for longer than {MAX_TICKET_MINUTES} minutes: refused.")
            if utcnow() > expires:
                raise ControlError(f"The run ticket of {signed.actor} expired at {expires.isoformat(timespec='seconds')}; "
                                   f"make a new one with `batch-admin ticket {month} --job {job}`.")
            if d.get("job") != job:
                raise ControlError(f"The run ticket of {signed.actor} is for {d.get('job')}, not {job}.")
            if month not in (d.get("months") or []):
                raise ControlError(f"The run ticket of {signed.actor} is for {', '.join(d.get('months') or [])}, "
                                   f"not {month}.")
            if request_id is None and d.get("request_id") is None:
                roles.require_admin(signed.actor, f"run {job} for {month}")
            elif d.get("request_id") != request_id or _issued_ticket(conn, str(request_id), month) != signed.nonce:
                raise ControlError(f"The run ticket of {signed.actor} was not issued by the approval of request "
                                   f"{request_id}: a finalize or unlock run carries out its request with the ticket "
                                   f"that request's approval issued, and no other.")
            used = conn.execute(sa.select(tickets.c.run_id).where(sa.and_(
                tickets.c.nonce == signed.nonce, tickets.c.month == month))).scalar()
            if used is None:
                conn.execute(tickets.insert().values(nonce=signed.nonce, month=month, run_id=run_id,
                                                     actor=signed.actor, signed_json=_dumps(signed.to_dict()),
                                                     used_at=utcnow()))
            elif used != run_id:
                # A re-execution takes the ticket over from the run holding it: one re-execution per run.
                taken = used == reexecution_of and conn.execute(tickets.update().where(sa.and_(
                    tickets.c.nonce == signed.nonce, tickets.c.month == month, tickets.c.run_id == used)).values(
                    run_id=run_id, used_at=utcnow())).rowcount == 1
                if not taken:
                    raise ControlError(
                        f"The run ticket of {signed.actor} for {month} was used by run {used}; a ticket is valid for "
                        f"one run (and a re-execution of that run once it failed or was canceled): make a new one "
                        f"with `batch-admin ticket {month} --job {job}`.")
        return signed.actor

    def _ticket_json(self, conn: Connection, month: str, run_id: str | None) -> str | None:
        if run_id is None:
            return None
        return conn.execute(sa.select(tickets.c.signed_json).where(sa.and_(
            tickets.c.month == month, tickets.c.run_id == run_id))).scalar()


def _issued_ticket(conn: Connection, request_id: str, month: str) -> str | None:
    """The nonce of the run ticket a request's approval (or a later repair) issued, None if none."""
    nonce = None
    for details_json in conn.execute(sa.select(audit.c.details_json).where(sa.and_(
            audit.c.month == month, audit.c.action.in_((approvals.APPROVE_ACTION, approvals.TICKET_ISSUED_ACTION))))
            .order_by(audit.c.id)).scalars():
        details = json.loads(details_json)
        if details.get("request_id") == request_id:
            nonce = details.get("ticket_nonce")
    return nonce
