"""Signing as the demo people do, for tests: their keys are the shipped demo keys."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from batch.approvals import KIND_FINALIZE, KIND_UNLOCK
from batch.identity import DEMO_KEYS_DIR, TICKET_TAG, Signed, load_private_key, make_ticket, sign
from batch.roles import ACTOR_TAG
from resources.control_store import ControlStore
from resources.settings import DEFAULT_ROLES_FILE


def key(name: str):
    return load_private_key(name, str(DEMO_KEYS_DIR / f"{name}.key"))


def signed(actor: str, action: str, month: str | None, details: dict[str, Any] | None = None,
           key_of: str | None = None) -> Signed:
    """`actor`'s action, signed with `key_of`'s key (the actor's own unless forging)."""
    return sign(key(key_of or actor), actor, action, month, details)


def ticket_tags(actor: str, job: str, month: str, minutes: float = 15) -> dict[str, str]:
    return {TICKET_TAG: make_ticket(key(actor), actor, job, [month], minutes).encode(), ACTOR_TAG: actor}


def install_keys(user_home: Path) -> dict[str, str]:
    """Each demo person's private key where `batch-admin` looks for it (~/.config/batch-admin/NAME.key),
    as on their own machines: production (PostgreSQL) never uses the shipped demo keys by itself.
    Returns the environment that makes `user_home` the home directory."""
    folder = user_home / ".config" / "batch-admin"
    folder.mkdir(parents=True, exist_ok=True)
    for path in DEMO_KEYS_DIR.glob("*.key"):
        shutil.copyfile(path, folder / path.name)
    return {"HOME": str(user_home)}


def open_store(url: str, migrate: bool | None = True) -> ControlStore:
    """A control store with the shipped demo roles accepted on first use."""
    return ControlStore(url, migrate=migrate, roles_file=DEFAULT_ROLES_FILE)


def finalize_binding_of(store: ControlStore, month: str, version: int, checksum: str = "c" * 64) -> dict[str, Any]:
    rows = {v["version"]: v for v in store.versions(month)}
    return {"version": version, "data_checksum": checksum, "input_fingerprint": rows[version]["input_fingerprint"],
            "versions_seen": len(rows)}


def file_finalize(store: ControlStore, month: str, version: int, by: str = "alice", note: str = "reviewed",
                  checksum: str = "c" * 64):
    return store.file_request(signed(by, "request", month, {
        "kind": KIND_FINALIZE, "text": note, "binding": finalize_binding_of(store, month, version, checksum)}))


def file_unlock(store: ControlStore, month: str, by: str = "alice", reason: str = "wrong capacity"):
    return store.file_request(signed(by, "request", month, {
        "kind": KIND_UNLOCK, "text": reason, "binding": {"final_version": store.month(month)["final_version"]}}))


def approve(store: ControlStore, request_id: str, by: str = "bob", key_of: str | None = None):
    request = store.request(request_id)
    return store.decide_request(signed(by, "approve", request.month, {
        "request_id": request.id, "binding": request.binding_public()}, key_of=key_of))


def finalize_in_store(store: ControlStore, month: str, version: int, by: str = "alice", approver: str = "bob"):
    """Request, approval and the final lock (the store's part of finalization; no files)."""
    request = file_finalize(store, month, version, by)
    approve(store, request.id, approver)
    store.complete_finalize(request.id, f"finalize-run-{request.id}")
    return request
