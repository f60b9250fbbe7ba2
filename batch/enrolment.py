"""Passkey enrolment tokens: one-time, signed with the person's Ed25519 key, valid ENROL_MINUTES."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from batch.identity import Signed, sign
from batch.passkeys import ENROL_ACTION, ENROL_MINUTES


def make_token(key: Ed25519PrivateKey, actor: str, now: datetime | None = None) -> Signed:
    """A one-time enrolment token: `actor` lets one passkey be registered in their name within ENROL_MINUTES."""
    start = now or datetime.now(UTC)
    return sign(key, actor, ENROL_ACTION, None, {"expires_at": (start + timedelta(minutes=ENROL_MINUTES)).isoformat()},
                start)
