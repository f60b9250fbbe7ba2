"""Sign in with a passkey: who an assertion proves, for a session that only reads.

A sign-in changes nothing and is not audited: the session it opens says who is reading and whose
passkeys to ask for; every change is still a passkey assertion over its own signed action.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from batch.identity import IdentityError, Signed, canonical
from batch.passkeys import Assertion, Credential, PasskeyError, verify_assertion
from batch.ports import ControlPort

SIGN_IN_ACTION = "sign_in"
# A sign-in challenge is answered within this time (the authenticator's prompt), or asked again.
SIGN_IN_MINUTES = 2


def sign_in_body(origin: str, nonce: str, now: datetime) -> bytes:
    """The bytes a sign-in assertion signs (its challenge is their SHA-256): the origin, a time, a fresh nonce."""
    return canonical({"action": SIGN_IN_ACTION, "origin": origin, "at": now.isoformat(), "nonce": nonce})


def signed_in(store: ControlPort, body: bytes, signature: str, credential: Credential | None, *,
              now: datetime | None = None) -> str:
    """The person a sign-in assertion proves: the registered credential's owner, once the assertion answers
    `body` (fresh: at most SIGN_IN_MINUTES old) for the credential's RP id and origin, user present and
    verified, its counter above the stored one when either counts; and the person is in the accepted roles."""
    assertion = Assertion.parse(signature)
    if credential is None or credential.credential_id != assertion.credential_id:
        raise IdentityError("This passkey is not registered here: register one on the People page first.")
    try:
        data = json.loads(body)
        at = datetime.fromisoformat(str(data["at"]))
    except (ValueError, KeyError, TypeError):
        raise IdentityError("The sign-in challenge does not decode.") from None
    now = now or datetime.now(UTC)
    if data.get("action") != SIGN_IN_ACTION or not now - timedelta(minutes=SIGN_IN_MINUTES) <= at <= now:
        raise IdentityError(f"The sign-in challenge is older than {SIGN_IN_MINUTES} minutes: sign in again.")
    try:
        verify_assertion(body, signature, credential.key_text, credential.sign_count)
    except PasskeyError as exc:
        raise IdentityError(f"The sign-in of {credential.person} does not verify: {exc}") from None
    return store.roles().require_known(credential.person, "sign in")


def check_passkey_signed(signed: Signed, credential: Credential | None) -> None:
    """Refuse a passkey-signed action whose assertion is not the actor's registered passkey's over its bytes:
    for a run ticket, checked before the run is submitted (the run checks it again, and moves the counter,
    as it claims the ticket)."""
    if credential is None or credential.person != signed.actor:
        raise IdentityError(f"The {signed.action} in the name of {signed.actor} is not signed with one of "
                            f"{signed.actor}'s passkeys: refused.")
    try:
        verify_assertion(canonical(signed.body()), signed.signature, credential.key_text, credential.sign_count)
    except PasskeyError as exc:
        raise IdentityError(f"The {signed.action} in the name of {signed.actor} does not verify: {exc}") from None
