"""What the domain core needs of the control store: a `typing.Protocol` port that
`resources.control_store.ControlStore` satisfies (mypy checks it in `resources/store_factory.py`).

The store keeps and verifies records inside its write transactions (signature, freshness, replay, and
again the role, phase and lock, so a change can never pass a check that no longer holds); the
action layer (`batch.actions`) decides which checks an action needs and in which order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from batch.approvals import Request
from batch.identity import Signed
from batch.roles import Roles


class LockView(Protocol):
    """A month's temporary lock as the store reports it."""

    @property
    def holder(self) -> str: ...

    @property
    def admins(self) -> list[str]: ...

    @property
    def expires_at(self) -> datetime: ...

    def active(self, now: datetime | None = None) -> bool: ...

    def to_dict(self) -> dict[str, Any]: ...


class ControlPort(Protocol):
    """The control store's reads and signed writes that the action layer uses."""

    def roles(self, gate: bool = True) -> Roles: ...

    def month(self, month: str) -> dict[str, Any]: ...

    def versions(self, month: str) -> list[dict[str, Any]]: ...

    def lock_info(self, month: str) -> LockView | None: ...

    def request(self, request_id: str) -> Request: ...

    def guard_write(self, month: str, actor: str | None, what: str) -> None: ...

    def check_can_run(self, month: str, actor: str | None, note: str | None) -> None: ...

    def set_params(self, signed: Signed) -> dict[str, Any]: ...

    def add_adjustment(self, signed: Signed) -> None: ...

    def take_lock(self, signed: Signed) -> LockView: ...

    def release_lock(self, signed: Signed) -> None: ...

    def record_signed(self, signed: Signed) -> None: ...

    def file_request(self, signed: Signed) -> Request: ...

    def add_alert(self, month: str | None, rule: str, severity: str, message: str,
                  details: dict[str, Any], dedup_key: str) -> int | None: ...

    def decide_request(self, signed: Signed) -> Request: ...

    def issue_ticket(self, signed: Signed) -> None: ...


class VersionFiles(Protocol):
    """The export store's record of a month's written versions (`resources.storage.ExportStore`)."""

    def versions(self, month: str) -> list[int]: ...

    def manifest(self, month: str, version: int) -> dict[str, Any]: ...
