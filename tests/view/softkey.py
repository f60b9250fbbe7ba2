"""A software passkey for tests: an ECDSA P-256 credential that answers WebAuthn registrations and
assertions as a platform authenticator does (user present and verified, a counter that grows)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, AT = 0x01, 0x04, 0x40


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftKey:
    """One credential; `counter` is the sign count of its next assertion."""

    rp_id: str = "localhost"
    origin: str = "http://localhost:3000"
    private: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    credential_id: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    counter: int = 1

    @property
    def id(self) -> str:
        return b64(self.credential_id)

    def _cose(self) -> bytes:
        numbers = self.private.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def _client_data(self, kind: str, challenge: bytes, origin: str | None) -> bytes:
        return json.dumps({"type": kind, "challenge": b64(challenge), "origin": origin or self.origin,
                           "crossOrigin": False}).encode()

    def register(self, challenge: bytes, origin: str | None = None) -> dict:
        """The browser's JSON of navigator.credentials.create() for this challenge."""
        auth = (hashlib.sha256(self.rp_id.encode()).digest() + bytes([UP | UV | AT]) + (0).to_bytes(4, "big")
                + bytes(16) + len(self.credential_id).to_bytes(2, "big") + self.credential_id + self._cose())
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth})
        return {"id": self.id, "rawId": self.id, "type": "public-key",
                "response": {"clientDataJSON": b64(self._client_data("webauthn.create", challenge, origin)),
                             "attestationObject": b64(attestation)}}

    def assert_(self, challenge: bytes, origin: str | None = None, flags: int = UP | UV) -> dict:
        """The browser's JSON of navigator.credentials.get() for this challenge (the counter moves on)."""
        auth = hashlib.sha256(self.rp_id.encode()).digest() + bytes([flags]) + self.counter.to_bytes(4, "big")
        self.counter += 1
        client = self._client_data("webauthn.get", challenge, origin)
        signature = self.private.sign(auth + hashlib.sha256(client).digest(), ec.ECDSA(hashes.SHA256()))
        return {"id": self.id, "type": "public-key",
                "response": {"authenticatorData": b64(auth), "clientDataJSON": b64(client), "signature": b64(signature)}}
