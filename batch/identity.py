"""Identities backed by keys: Ed25519 key pairs, signed actions and signed run tickets.

Every state-changing action is a `Signed` value: what is done (action, month, details), by whom,
when, a one-time nonce and the actor's Ed25519 signature over all of it. The control store verifies
it against the *accepted* roles (their public keys) before it records anything, so naming another
person is useless without that person's private key. A run ticket is a signed action whose action
is `ticket`: it lets one run of one job write one month for a short time.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from batch.names import KEY_VAR, TICKET_TAG  # noqa: F401  (importers take them from here too)
from batch.passkeys import check_passkey_signature, is_passkey_signature

KEY_PREFIX = "ed25519:"
# A signed action is fresh for this long: it is made by the command that submits it.
MAX_ACTION_AGE = timedelta(minutes=10)
# Clocks of two hosts may differ a little.
CLOCK_SKEW = timedelta(minutes=2)
# Run tickets: short-lived, for one run per month.
DEFAULT_TICKET_MINUTES = 15
MAX_TICKET_MINUTES = 24 * 60
# Keys shipped for the embedded demo only (docs/lifecycle.md says so).
DEMO_KEYS_DIR = Path(__file__).resolve().parent.parent / "pipelines" / "demo_keys"
# Their public keys, known without reading that folder: any other control store refuses them.
DEMO_PUBLIC_KEYS = frozenset({
    "ed25519:nd4BYwn2Fw2D/yMB1AN+/NqlLUd3PKxcAcfxd1BJGfs=",  # alice
    "ed25519:X2gu1tiv2PW9hZxHjhI2J1BhbYkEtp2D/P4xtAFLRKU=",  # carol
    "ed25519:w7bC0tLDc5RGOpAgIIwHVq5z9OxoUq8ZcCYpM1KP6/0=",  # bob
    "ed25519:fEWHO7sty0LzvXyjlTRzvH1CZmXNvXFBterXh2AXtW4=",  # dana
})


class IdentityError(PermissionError):
    """A missing, forged, stale or replayed signature; str() is one clear sentence."""


def default_key_path(name: str) -> Path:
    return Path("~/.config/batch-admin").expanduser() / f"{name}.key"


def generate_key() -> tuple[bytes, str]:
    """A new key pair: the private key as PEM, and the public key as the roles file writes it."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return pem, public_key_text(private.public_key())


def public_key_text(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KEY_PREFIX + base64.b64encode(raw).decode()


def write_private_key(path: Path, pem: bytes) -> None:
    """Write a private key readable by its owner only; never replace an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def parse_public_key(text: str, who: str) -> Ed25519PublicKey:
    if not isinstance(text, str) or not text.startswith(KEY_PREFIX):
        raise IdentityError(f"The public key of {who} in the roles file must look like {KEY_PREFIX}BASE64.")
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text[len(KEY_PREFIX):], validate=True))
    except (ValueError, binascii.Error):
        raise IdentityError(f"The public key of {who} in the roles file is not a valid Ed25519 key.") from None


def load_private_key(actor: str, explicit: str | None = None, demo: bool = False,
                     embedded: bool = True) -> Ed25519PrivateKey:
    """The acting person's private key: BATCH_ADMIN_KEY, else ~/.config/batch-admin/NAME.key, else
    (the shipped demo roles only) the demo key of that name. Outside the embedded default the demo
    key folder is never read."""
    candidates = [Path(explicit).expanduser()] if explicit else []
    if explicit and not embedded and candidates[0].resolve().is_relative_to(DEMO_KEYS_DIR):
        raise IdentityError(f"{explicit} is a shipped demo key, whose private half is public: it serves the embedded "
                            f"default only; make your own with `batch-admin keygen {actor}`.")
    if not explicit:
        candidates.append(default_key_path(actor))
        if demo:
            candidates.append(DEMO_KEYS_DIR / f"{actor}.key")
    for path in candidates:
        if path.is_file():
            try:
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            except (ValueError, TypeError):
                raise IdentityError(f"{path} is not an unencrypted Ed25519 private key in PEM.") from None
            if not isinstance(key, Ed25519PrivateKey):
                raise IdentityError(f"{path} is not an Ed25519 private key.")
            return key
    where = candidates[0] if explicit else default_key_path(actor)
    raise IdentityError(f"No private key for {actor} at {where}: make one with `batch-admin keygen {actor}` "
                        f"(and have its public key added to the roles file) or point {KEY_VAR} at yours.")


def canonical(value: Any) -> bytes:
    """The bytes a signature covers."""
    return _canonical(value)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


@dataclass(frozen=True)
class Signed:
    """One action signed by its actor."""

    actor: str
    action: str
    month: str | None
    details: Mapping[str, Any]
    at: str
    nonce: str
    signature: str

    def body(self) -> dict[str, Any]:
        return {"actor": self.actor, "action": self.action, "month": self.month, "details": dict(self.details),
                "at": self.at, "nonce": self.nonce}

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "signature": self.signature}

    def encode(self) -> str:
        """A compact text form (a run tag's value)."""
        return base64.urlsafe_b64encode(_canonical(self.to_dict())).decode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signed:
        try:
            return cls(actor=str(data["actor"]), action=str(data["action"]),
                       month=None if data.get("month") is None else str(data["month"]),
                       details=dict(data.get("details") or {}), at=str(data["at"]), nonce=str(data["nonce"]),
                       signature=str(data["signature"]))
        except (KeyError, TypeError, AttributeError):
            raise IdentityError("The signed action is incomplete (actor, action, at, nonce, signature).") from None

    @classmethod
    def decode(cls, text: str) -> Signed:
        try:
            data = json.loads(base64.urlsafe_b64decode(text.strip().encode()))
        except (ValueError, binascii.Error):
            raise IdentityError("The run ticket is not one made by `batch-admin ticket` (it does not decode).") from None
        if not isinstance(data, dict):
            raise IdentityError("The run ticket is not one made by `batch-admin ticket`.")
        return cls.from_dict(data)

    @property
    def signed_at(self) -> datetime:
        try:
            at = datetime.fromisoformat(self.at)
        except ValueError:
            raise IdentityError(f"The signed action's time {self.at!r} is not an ISO timestamp.") from None
        return at if at.tzinfo else at.replace(tzinfo=UTC)


def sign(key: Ed25519PrivateKey, actor: str, action: str, month: str | None,
         details: Mapping[str, Any] | None = None, now: datetime | None = None) -> Signed:
    """Sign an action as `actor` with their private key."""
    unsigned = Signed(actor=actor, action=action, month=month, details=dict(details or {}),
                      at=(now or datetime.now(UTC)).isoformat(), nonce=secrets.token_hex(16), signature="")
    signature = base64.b64encode(key.sign(_canonical(unsigned.body()))).decode()
    return Signed(**{**unsigned.body(), "signature": signature})


def check_signature(signed: Signed, public_key_texts: list[str]) -> bool:
    """True when one of the actor's public keys (Ed25519, or a registered passkey's) verifies the signature."""
    if is_passkey_signature(signed.signature):
        return check_passkey_signature(_canonical(signed.body()), signed.signature, public_key_texts)
    try:
        signature = base64.b64decode(signed.signature, validate=True)
    except (ValueError, binascii.Error):
        return False
    for text in public_key_texts:
        try:
            parse_public_key(text, signed.actor).verify(signature, _canonical(signed.body()))
            return True
        except (InvalidSignature, IdentityError):
            continue
    return False


def make_ticket(key: Ed25519PrivateKey, actor: str, job: str, months: list[str], minutes: float,
                now: datetime | None = None, request_id: str | None = None) -> Signed:
    """A run ticket: `actor` lets one run of `job` per month in `months` write, for `minutes` (with
    `request_id`: the ticket an approval issues, which carries out that request only)."""
    start = now or datetime.now(UTC)
    return sign(key, actor, "ticket", None, ticket_details(job, months, minutes, start, request_id), start)


def ticket_details(job: str, months: list[str], minutes: float, start: datetime,
                   request_id: str | None = None) -> dict[str, Any]:
    """What a run ticket signs (a passkey signs these details too: batch_view.passkey_views)."""
    if not 0 < minutes <= MAX_TICKET_MINUTES:
        raise IdentityError(f"A run ticket is valid for more than 0 and at most {MAX_TICKET_MINUTES} minutes, "
                            f"not {minutes}.")
    details: dict[str, Any] = {"job": job, "months": sorted(months),
                               "expires_at": (start + timedelta(minutes=minutes)).isoformat()}
    if request_id is not None:
        details["request_id"] = request_id
    return details
