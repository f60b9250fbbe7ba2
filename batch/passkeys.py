"""Passkeys (WebAuthn) as signatures of signed actions, verified with py_webauthn.

A passkey is registered for a person with an enrolment token signed by that person's Ed25519 key; its
public key is then kept as a *key text* `webauthn:` + base64url(JSON: credential id, COSE public key,
RP id, origin), beside the person's Ed25519 keys. An action signed with a passkey is a `Signed` whose
signature is `webauthn:` + base64url(JSON: credential id, authenticatorData, clientDataJSON,
signature): its WebAuthn challenge is the SHA-256 of the action's canonical bytes (the same bytes the
CLI signs with Ed25519, with their nonce and time). Verifying needs nothing but the key text, so the
audit log re-verifies every passkey signature offline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

PASSKEY_PREFIX = "webauthn:"
ENROL_ACTION = "passkey_enroll"
ENROL_MINUTES = 10
DEFAULT_RP_ID = "localhost"


class PasskeyError(PermissionError):
    """A passkey assertion or registration that does not stand; str() is one sentence."""


def challenge_of(body: bytes) -> bytes:
    """The WebAuthn challenge of a signed action: the SHA-256 of its canonical bytes."""
    return hashlib.sha256(body).digest()


def check_rp_id(rp_id: str) -> str:
    """A relying-party id is a domain name, never an IP address."""
    try:
        ipaddress.ip_address(rp_id.strip("[]"))
    except ValueError:
        if rp_id and "/" not in rp_id and ":" not in rp_id:
            return rp_id
        raise PasskeyError(f"The passkey RP id {rp_id!r} is not a domain name (e.g. localhost or admin.example.org).") \
            from None
    raise PasskeyError(f"The passkey RP id {rp_id!r} is an IP address; WebAuthn needs a domain name "
                       f"(open the view at http://localhost:PORT, or configure the deployment's domain).")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _pack(value: dict[str, Any]) -> str:
    return PASSKEY_PREFIX + _b64(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


def _unpack(text: str, what: str) -> dict[str, Any]:
    if not isinstance(text, str) or not text.startswith(PASSKEY_PREFIX):
        raise PasskeyError(f"The {what} is not a passkey {what}.")
    try:
        value = json.loads(_unb64(text[len(PASSKEY_PREFIX):]))
    except (ValueError, binascii.Error):
        raise PasskeyError(f"The passkey {what} does not decode.") from None
    if not isinstance(value, dict):
        raise PasskeyError(f"The passkey {what} does not decode.")
    return value


@dataclass(frozen=True)
class PasskeyKey:
    """A registered passkey's public half, and where it may sign."""

    credential_id: str  # base64url, as WebAuthn sends it
    public_key: bytes  # COSE
    rp_id: str
    origin: str

    def text(self) -> str:
        return _pack({"credential_id": self.credential_id, "public_key": _b64(self.public_key),
                      "rp_id": self.rp_id, "origin": self.origin})

    @classmethod
    def parse(cls, text: str) -> PasskeyKey:
        value = _unpack(text, "public key")
        try:
            return cls(str(value["credential_id"]), _unb64(str(value["public_key"])), str(value["rp_id"]),
                       str(value["origin"]))
        except (KeyError, ValueError, binascii.Error):
            raise PasskeyError("The passkey public key is incomplete (credential id, public key, RP id, origin).") \
                from None


@dataclass(frozen=True)
class Credential:
    """A registered passkey as the control store keeps it: whose, its key text, its last sign count."""

    credential_id: str
    person: str
    key_text: str
    sign_count: int


@dataclass(frozen=True)
class Assertion:
    """One WebAuthn assertion, as kept in a signed action's signature."""

    credential_id: str
    authenticator_data: bytes
    client_data_json: bytes
    signature: bytes

    def text(self) -> str:
        return _pack({"credential_id": self.credential_id, "authenticator_data": _b64(self.authenticator_data),
                      "client_data_json": _b64(self.client_data_json), "signature": _b64(self.signature)})

    @classmethod
    def parse(cls, text: str) -> Assertion:
        value = _unpack(text, "signature")
        try:
            return cls(str(value["credential_id"]), _unb64(str(value["authenticator_data"])),
                       _unb64(str(value["client_data_json"])), _unb64(str(value["signature"])))
        except (KeyError, ValueError, binascii.Error):
            raise PasskeyError("The passkey signature is incomplete.") from None

    @classmethod
    def from_browser(cls, credential: dict[str, Any]) -> Assertion:
        """The assertion of a PublicKeyCredential as the browser's JSON gives it (base64url fields)."""
        try:
            response = credential["response"]
            return cls(str(credential["id"]), _unb64(response["authenticatorData"]),
                       _unb64(response["clientDataJSON"]), _unb64(response["signature"]))
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise PasskeyError("The passkey assertion is incomplete (id, authenticatorData, clientDataJSON, "
                               "signature).") from None

    @property
    def sign_count(self) -> int:
        return int.from_bytes(self.authenticator_data[33:37], "big") if len(self.authenticator_data) >= 37 else 0


def is_passkey_signature(signature: str) -> bool:
    return isinstance(signature, str) and signature.startswith(PASSKEY_PREFIX)


def verify_assertion(body: bytes, signature: str, key_text: str, sign_count: int = 0) -> int:
    """Verify a passkey signature of `body` with a registered key (challenge, origin, RP id, user present and
    verified, signature, and a counter above `sign_count` when either counts); the new sign count."""
    # deferred: start-up speed (webauthn and pyOpenSSL take ~0.4 s; every CLI command imports batch.identity)
    from webauthn import verify_authentication_response
    from webauthn.helpers.exceptions import InvalidAuthenticationResponse

    key = PasskeyKey.parse(key_text)
    assertion = Assertion.parse(signature)
    if assertion.credential_id != key.credential_id:
        raise PasskeyError("The passkey signature is made with another credential.")
    credential = {"id": assertion.credential_id, "rawId": assertion.credential_id, "type": "public-key",
                  "response": {"authenticatorData": _b64(assertion.authenticator_data),
                               "clientDataJSON": _b64(assertion.client_data_json),
                               "signature": _b64(assertion.signature)}}
    try:
        verified = verify_authentication_response(
            credential=credential, expected_challenge=challenge_of(body), expected_rp_id=key.rp_id,
            expected_origin=key.origin, credential_public_key=key.public_key,
            credential_current_sign_count=sign_count, require_user_verification=True)
    except (InvalidAuthenticationResponse, ValueError, KeyError) as exc:
        raise PasskeyError(f"The passkey signature does not verify: {exc}") from None
    return int(verified.new_sign_count)


def check_passkey_signature(body: bytes, signature: str, key_texts: list[str]) -> bool:
    """True when one of the passkey keys verifies the signature (offline: no counter)."""
    for text in key_texts:
        if not is_passkey_signature(text):
            continue
        try:
            verify_assertion(body, signature, text)
            return True
        except PasskeyError:
            continue
    return False


def verify_registration(credential: dict[str, Any], token_body: bytes, rp_id: str, origin: str) -> PasskeyKey:
    """A new passkey's public key, once its attestation answers the enrolment token's challenge, for this RP
    id and origin, with the user present and verified."""
    from webauthn import verify_registration_response  # deferred: start-up speed (see verify_assertion)
    from webauthn.helpers.exceptions import InvalidRegistrationResponse

    try:
        verified = verify_registration_response(
            credential=credential, expected_challenge=challenge_of(token_body), expected_rp_id=check_rp_id(rp_id),
            expected_origin=origin, require_user_presence=True, require_user_verification=True)
    except (InvalidRegistrationResponse, ValueError, KeyError, TypeError) as exc:
        raise PasskeyError(f"The passkey registration does not verify: {exc}") from None
    return PasskeyKey(_b64(verified.credential_id), verified.credential_public_key, rp_id, origin)
