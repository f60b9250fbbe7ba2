"""The control store's passkeys: registered with a signed enrolment token, listed, and their counters.

The `passkeys` table (migration 0006) keeps each person's credentials as key texts (batch.passkeys):
the control store verifies a passkey-signed action against them as it does against Ed25519 keys, and
moves the credential's sign counter forward in the same write transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from batch.identity import IdentityError, Signed
from batch.passkeys import ENROL_ACTION, Assertion, Credential, PasskeyKey, is_passkey_signature

metadata = sa.MetaData()
passkeys = sa.Table(
    "passkeys", metadata,
    sa.Column("credential_id", sa.String(512), primary_key=True),
    sa.Column("person", sa.String(64), nullable=False, index=True),
    sa.Column("key_text", sa.Text, nullable=False),
    sa.Column("sign_count", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_used_at", sa.DateTime(timezone=True)),
)


def passkey_keys(conn: Connection, person: str | None = None) -> dict[str, list[str]]:
    """Each person's registered passkeys as key texts (of one person, or of everybody)."""
    query = sa.select(passkeys.c.person, passkeys.c.key_text).order_by(passkeys.c.created_at)
    if person is not None:
        query = query.where(passkeys.c.person == person)
    found: dict[str, list[str]] = {}
    for who, text in conn.execute(query):
        found.setdefault(who, []).append(text)
    return found


def listed(conn: Connection) -> list[dict[str, Any]]:
    """Every registered passkey: person, credential id, RP id, origin, counter, registered and last used."""
    rows = conn.execute(sa.select(passkeys).order_by(passkeys.c.person, passkeys.c.created_at)).mappings().all()
    found = []
    for row in rows:
        key = PasskeyKey.parse(row["key_text"])
        found.append({"person": row["person"], "credential_id": row["credential_id"], "rp_id": key.rp_id,
                      "origin": key.origin, "sign_count": row["sign_count"], "created_at": row["created_at"],
                      "last_used_at": row["last_used_at"]})
    return found


def advance_counter(conn: Connection, signed: Signed, now: datetime) -> None:
    """Move a passkey's sign counter forward; a counter that does not grow (when it counts) is a cloned
    authenticator or a replay, and is refused."""
    if not is_passkey_signature(signed.signature):
        return
    assertion = Assertion.parse(signed.signature)
    row = conn.execute(sa.select(passkeys).where(sa.and_(
        passkeys.c.credential_id == assertion.credential_id, passkeys.c.person == signed.actor))).mappings().first()
    if row is None:
        raise IdentityError(f"The passkey that signed this {signed.action} is not one of {signed.actor}'s: refused.")
    new, old = assertion.sign_count, int(row["sign_count"])
    if (new or old) and new <= old:
        raise IdentityError(f"The passkey of {signed.actor} signed with counter {new}, not above {old}: a cloned "
                            f"authenticator or a replay, refused.")
    conn.execute(passkeys.update().where(passkeys.c.credential_id == assertion.credential_id).values(
        sign_count=new, last_used_at=now))


def enrolment_details(token: Signed, key: PasskeyKey) -> dict[str, Any]:
    """What the audit entry of an enrolment records: the token's own details, the credential and its key."""
    return {**dict(token.details), "credential_id": key.credential_id, "public_key": key.text(),
            "rp_id": key.rp_id, "origin": key.origin}


def insert(conn: Connection, token: Signed, key: PasskeyKey, now: datetime) -> None:
    """Register `key` for the token's signer; a credential registered before is refused."""
    if token.action != ENROL_ACTION:
        raise IdentityError(f"A passkey is registered with an enrolment token, not a {token.action}.")
    if conn.execute(sa.select(passkeys.c.person).where(passkeys.c.credential_id == key.credential_id)).first():
        raise IdentityError("This passkey is registered already.")
    conn.execute(passkeys.insert().values(credential_id=key.credential_id, person=token.actor, key_text=key.text(),
                                          sign_count=0, created_at=now))


def credential(conn: Connection, credential_id: str) -> Credential | None:
    """One registered passkey by its credential id (whose, its key text, its sign count), or None."""
    row = conn.execute(sa.select(passkeys).where(passkeys.c.credential_id == credential_id)).mappings().first()
    return None if row is None else Credential(row["credential_id"], row["person"], row["key_text"],
                                               int(row["sign_count"]))
