"""The keys room: the accepted roles (and their four-eyes changes), public keys and passkeys, and the
verification of every signed action (signature, freshness, replay) inside its write transaction."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from batch.identity import CLOCK_SKEW, MAX_ACTION_AGE, IdentityError, Signed, check_signature
from batch.passkeys import ENROL_ACTION, PasskeyKey
from batch.roles import RoleError, Roles
from resources.control_store import passkey_store
from resources.control_store.alert_room import AlertRoom
from resources.control_store.plumbing import _aware, utcnow
from resources.control_store.tables import (
    audit,
    roles_accepted,
)


class KeyRoom(AlertRoom):
    """Roles, keys, passkeys and the verification of signed actions (a refusal is alerted)."""

    def _accepted(self, conn: Connection) -> tuple[Roles, dict[str, Any]] | None:
        row = conn.execute(sa.select(roles_accepted).order_by(roles_accepted.c.id.desc()).limit(1)).mappings().first()
        if row is None:
            return None
        return Roles.parse(row["content"], row["source"]), dict(row)

    def roles(self, gate: bool = True) -> Roles:
        """The accepted roles (the first roles file is accepted on first use). gate: refuse while the
        deployment's roles file differs from them, until an admin and an approver accept it."""
        with self.read() as conn:
            found = self._accepted(conn)
        if found is None:
            if self.roles_file is None:
                raise RoleError("The control store has no accepted roles yet and no roles file was given to adopt.")
            with self.write() as conn:
                found = self._accepted(conn)
                if found is None:
                    first = self._no_demo_keys(Roles.load(self.roles_file))
                    conn.execute(roles_accepted.insert().values(checksum=first.checksum, content=first.text,
                                                                source=first.source, accepted_at=utcnow()))
                    self._append_audit(conn, None, None, "roles_adopted",
                                       {"source": first.source, "checksum": first.checksum})
                    found = self._accepted(conn)
        assert found is not None
        accepted, row = self._no_demo_keys(found[0]), found[1]
        if gate and self.roles_file is not None:
            current = Roles.load(self.roles_file)
            if current.checksum != accepted.checksum:
                raise RoleError(
                    f"The roles file {self.roles_file} differs from the roles accepted at "
                    f"{_aware(row['accepted_at']).isoformat(timespec='seconds')} (from {accepted.source}); nothing is "
                    f"done until an admin files `batch-admin accept-roles --note TEXT` and an approver approves it.")
        return accepted

    def _no_demo_keys(self, roles: Roles) -> Roles:
        if not self.demo_keys:
            roles.refuse_demo_keys()
        return roles

    def roles_file_status(self) -> dict[str, Any]:
        """The accepted roles and whether the deployment's roles file still matches them."""
        with self.read() as conn:
            found = self._accepted(conn)
        current = Roles.load(self.roles_file) if self.roles_file is not None else None
        if found is None:
            return {"accepted": None, "file": str(self.roles_file) if self.roles_file else None, "matches": None}
        accepted, row = found
        return {"accepted": {"checksum": accepted.checksum, "source": accepted.source,
                             "accepted_at": _aware(row["accepted_at"]), "accepted_by": row["accepted_by"],
                             "approved_by": row["approved_by"]},
                "file": str(self.roles_file) if self.roles_file else None,
                "matches": None if current is None else current.checksum == accepted.checksum}

    def _all_public_keys(self, conn: Connection) -> dict[str, list[str]]:
        """Every key each person had in any accepted roles (old audit entries stay verifiable)."""
        keys: dict[str, list[str]] = {}
        for content, source in conn.execute(sa.select(roles_accepted.c.content, roles_accepted.c.source)):
            for who, key in Roles.parse(content, source).keys.items():
                keys.setdefault(who, [])
                if key not in keys[who]:
                    keys[who].append(key)
        for who, texts in passkey_store.passkey_keys(conn).items():
            keys.setdefault(who, []).extend(texts)
        return keys

    def _verify(self, conn: Connection, roles: Roles, signed: Signed, action: str, month: str | None,
                fresh: bool = True) -> None:
        """The signature is the actor's, for this action and month, recent, and never used before."""
        if not isinstance(signed, Signed):
            raise IdentityError(f"An unsigned {action} is refused: every action is signed with its actor's key.")
        if signed.action != action or signed.month != month:
            raise IdentityError(f"The signature by {signed.actor} is for {signed.action} of {signed.month or 'no month'}, "
                                f"not {action} of {month or 'no month'}: refused.")
        now, at = utcnow(), signed.signed_at
        if at > now + CLOCK_SKEW or (fresh and now - at > MAX_ACTION_AGE):
            raise IdentityError(f"The {action} signed by {signed.actor} at {signed.at} is not recent (a signed action "
                                f"is valid for {int(MAX_ACTION_AGE.total_seconds() // 60)} minutes): sign it again.")
        keys = roles.public_keys(signed.actor) + passkey_store.passkey_keys(conn, signed.actor).get(signed.actor, [])
        if not keys:
            raise IdentityError(f"{signed.actor!r} has no public key in the accepted roles ({roles.source}), so "
                                f"nothing can be done in that name.")
        if not check_signature(signed, keys):
            raise IdentityError(f"The {action} in the name of {signed.actor} is not signed with {signed.actor}'s key: "
                                f"refused.")
        if fresh and conn.execute(sa.select(audit.c.id).where(audit.c.nonce == signed.nonce)).first() is not None:
            raise IdentityError(f"This {action} signed by {signed.actor} was used before (a replay): refused.")
        if fresh:
            passkey_store.advance_counter(conn, signed, now)

    @contextmanager
    def _signed(self, signed: Signed, action: str, month: str | None, gate: bool = True,
                fresh: bool = True) -> Iterator[tuple[Connection, Roles]]:
        """A write transaction that first reads the roles and verifies the signed action; a forged,
        unsigned, stale or replayed one is refused, audited and alerted (in the same transaction: the
        change is undone, the refusal kept)."""
        with self.unit():
            roles = self.roles(gate=gate)
            try:
                with self.write() as conn:
                    self._verify(conn, roles, signed, action, month, fresh)
                    yield conn, roles
            except IdentityError as exc:
                self.refused(getattr(signed, "actor", None), action, month, str(exc))
                raise

    def refused(self, actor: str | None, action: str, month: str | None, message: str) -> None:
        """Audit and alert an action refused for its identity (forged, unsigned, stale, replayed)."""
        self.add_alert(month, "refused_action", "error", message,
                       {"claimed_actor": actor, "action": action},
                       f"refused:{hashlib.sha256(message.encode()).hexdigest()[:16]}:{utcnow():%Y%m%d%H%M}",
                       audit_actor=actor, audit_action="refused")

    def register_passkey(self, token: Signed, key: PasskeyKey) -> None:
        """Register a passkey for the signer of an enrolment token (signed by their key, fresh, used once); the
        audit entry keeps the token and the credential's id and public key."""
        with self._signed(token, ENROL_ACTION, None) as (conn, _roles):
            passkey_store.insert(conn, token, key, utcnow())
            self._append_audit(conn, None, token.actor, ENROL_ACTION, passkey_store.enrolment_details(token, key), token)

    def passkeys(self) -> list[dict[str, Any]]:
        """Every registered passkey (resources.control_store.passkey_store.listed)."""
        with self.read() as conn:
            return passkey_store.listed(conn)
