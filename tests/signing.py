"""Signing as the people of the tests do: alice and carol (admins), bob and dana (approvers), as in the
demo roles, but with keys of their own made for this test session (a control store on PostgreSQL never
accepts the shipped demo keys); `demo_key` for tests that act on the embedded default's demo roles."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from batch.approvals import KIND_FINALIZE, KIND_UNLOCK
from batch.identity import (
    DEMO_KEYS_DIR,
    TICKET_TAG,
    Signed,
    generate_key,
    load_private_key,
    make_ticket,
    sign,
    write_private_key,
)
from batch.roles import ACTOR_TAG
from resources.control_store import ControlStore
from resources.settings import DEFAULT_ROLES_FILE

PEOPLE = ("alice", "bob", "carol", "dana")
PEOPLE_VAR = "BATCH_ADMIN_TEST_PEOPLE"


@cache
def people_dir() -> Path:
    """A folder with each person's private key (NAME.key) and roles.yaml naming their public keys; made
    once per test session (processes the session starts find it through PEOPLE_VAR)."""
    made = os.environ.get(PEOPLE_VAR)
    if made and (Path(made) / "roles.yaml").is_file():
        return Path(made)
    folder = Path(tempfile.mkdtemp(prefix="ba_people_"))
    os.environ[PEOPLE_VAR] = str(folder)
    atexit.register(shutil.rmtree, folder, True)
    lines = []
    for name in PEOPLE:
        pem, public = generate_key()
        write_private_key(folder / f"{name}.key", pem)
        lines.append(f"  {name}: {public}")
    (folder / "roles.yaml").write_text("admins: [alice, carol]\napprovers: [bob, dana]\nsystem: [scheduler]\n"
                                       "keys:\n" + "\n".join(lines) + "\n")
    return folder


def roles_file() -> Path:
    """The test session's roles file (the demo roles' people, with keys of their own)."""
    return people_dir() / "roles.yaml"


def key(name: str):
    return load_private_key(name, str(people_dir() / f"{name}.key"))


def demo_key(name: str):
    """The shipped demo key (the embedded default with the shipped roles file accepts it)."""
    return load_private_key(name, str(DEMO_KEYS_DIR / f"{name}.key"))


def signed(actor: str, action: str, month: str | None, details: dict[str, Any] | None = None,
           key_of: str | None = None) -> Signed:
    """`actor`'s action, signed with `key_of`'s key (the actor's own unless forging)."""
    return sign(key(key_of or actor), actor, action, month, details)


def ticket_tags(actor: str, job: str, month: str, minutes: float = 15, key_of=demo_key) -> dict[str, str]:
    """A run's ticket tags, signed with the demo key (the embedded default) unless `key_of` says otherwise."""
    return {TICKET_TAG: make_ticket(key_of(actor), actor, job, [month], minutes).encode(), ACTOR_TAG: actor}


def install_keys(user_home: Path) -> dict[str, str]:
    """Each person's private key where `batch-admin` looks for it (~/.config/batch-admin/NAME.key), as
    on their own machines. Returns the environment that makes `user_home` the home directory and the
    test session's roles file the deployment's."""
    folder = user_home / ".config" / "batch-admin"
    folder.mkdir(parents=True, exist_ok=True)
    for name in PEOPLE:
        shutil.copyfile(people_dir() / f"{name}.key", folder / f"{name}.key")
    return {"HOME": str(user_home), "BATCH_ADMIN_ROLES": str(roles_file())}


def open_store(url: str, migrate: bool | None = True) -> ControlStore:
    """A control store with the test session's roles accepted on first use."""
    return ControlStore(url, migrate=migrate, roles_file=roles_file())


def open_demo_store(url: str) -> ControlStore:
    """An embedded control store with the shipped demo roles accepted on first use."""
    return ControlStore(url, migrate=True, roles_file=DEFAULT_ROLES_FILE)


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
