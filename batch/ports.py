"""What the domain core needs of the stores: `typing.Protocol` ports, one per room of the control store
(`resources/control_store/`), that `ControlStore` satisfies (mypy checks it in `resources/store_factory.py`),
and the export store's reads and report writes (`resources.storage.ExportStore`).

The store keeps and verifies records inside its write transactions (signature, freshness, replay, and
again the role, phase and lock, so a change can never pass a check that no longer holds); the
action layer (`batch.actions`) decides which checks an action needs and in which order. A function of
the core takes the narrowest port it needs: a room's port, or one of the combinations below.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from batch.approvals import Request
from batch.identity import Signed
from batch.roles import Roles

if TYPE_CHECKING:  # annotations only: pandas takes 1.4 s to import (-X importtime), and batch.actions imports this module
    import pandas as pd


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


class MonthPort(Protocol):
    """The month rows every room shares (`plumbing`): phase, parameters, final version."""

    def month(self, month: str) -> dict[str, Any]: ...

    def months(self) -> list[dict[str, Any]]: ...


class UnitPort(Protocol):
    """The store's plumbing: the reads and writes made inside `unit()` are one transaction."""

    def unit(self) -> AbstractContextManager[None]: ...


class KeyPort(Protocol):
    """The keys room: the accepted roles."""

    def roles(self, gate: bool = True) -> Roles: ...


class AlertPort(Protocol):
    """The alerts room: alerts raised, in order."""

    def alerts(self, month: str | None = None, pending: bool = False) -> list[dict[str, Any]]: ...

    def add_alert(self, month: str | None, rule: str, severity: str, message: str,
                  details: dict[str, Any], dedup_key: str) -> int | None: ...


class HistoryReads(Protocol):
    """Months' versions and final versions, in one read (a version's trend, the trailing metrics)."""

    def history(self, months_wanted: list[str]) -> dict[str, dict[str, Any]]: ...


class VersionPort(HistoryReads, Protocol):
    """The versions room: a month's versions, and whether a run may make another."""

    def versions(self, month: str) -> list[dict[str, Any]]: ...

    def check_can_run(self, month: str, actor: str | None, note: str | None) -> None: ...


class LockPort(Protocol):
    """The locks room: a month's temporary lock, taken and released by a signed action."""

    def lock_info(self, month: str) -> LockView | None: ...

    def guard_write(self, month: str, actor: str | None, what: str) -> None: ...

    def take_lock(self, signed: Signed) -> LockView: ...

    def release_lock(self, signed: Signed) -> None: ...


class ParamPort(Protocol):
    """The parameters room: a month's parameters and adjustments, changed by a signed action."""

    def set_params(self, signed: Signed) -> dict[str, Any]: ...

    def add_adjustment(self, signed: Signed) -> None: ...


class RequestPort(Protocol):
    """The requests room (four eyes): filed, decided, and carried out once by their job."""

    def request(self, request_id: str) -> Request: ...

    def requests(self, month: str | None = None) -> list[Request]: ...

    def file_request(self, signed: Signed) -> Request: ...

    def decide_request(self, signed: Signed) -> Request: ...

    def issue_ticket(self, signed: Signed) -> None: ...

    def approved_request(self, request_id: str, kind: str, month: str) -> Request: ...

    def check_finalize_binding(self, request: Request) -> None: ...

    def mark_stale(self, request_id: str, why: str) -> None: ...

    def complete_finalize(self, request_id: str, run_id: str) -> dict[str, Any]: ...

    def complete_unlock(self, request_id: str, run_id: str) -> Request: ...


class AuditPort(Protocol):
    """The audit room: signed actions that change no state, the entries and the chain's anchor."""

    def record_signed(self, signed: Signed) -> None: ...

    def audit_entries(self, month: str | None = None) -> list[dict[str, Any]]: ...

    def audit_anchor(self) -> dict[str, Any]: ...


class HistoryPort(MonthPort, VersionPort, Protocol):
    """A month and its versions (health, trend)."""


class OverviewPort(MonthPort, VersionPort, LockPort, AlertPort, Protocol):
    """Every month with its versions, lock and alerts (the months overview)."""


class RecordsPort(MonthPort, VersionPort, RequestPort, AuditPort, Protocol):
    """A month, its versions, requests and audit (a version's report and standing; carrying out and
    repairing a finalize or unlock)."""


class ReportRecords(HistoryReads, Protocol):
    """What a version's report reads of the control store: the month, its requests and audit entries, the
    trend's history (the store itself, or `batch.month_records.MonthRecords` read in one transaction)."""

    def month(self, month: str) -> dict[str, Any]: ...

    def requests(self, month: str | None = None) -> list[Request]: ...

    def audit_entries(self, month: str | None = None) -> list[dict[str, Any]]: ...


class ControlPort(UnitPort, KeyPort, MonthPort, AlertPort, VersionPort, LockPort, ParamPort, RequestPort, AuditPort, Protocol):
    """The whole control store as the action layer sees it: every room's port."""


class VersionFiles(Protocol):
    """The export store's record of a month's written versions (`resources.storage.ExportStore`)."""

    def versions(self, month: str) -> list[int]: ...

    def manifest(self, month: str, version: int) -> dict[str, Any]: ...


class ExportReads(VersionFiles, Protocol):
    """What the core reads of the export store: the home, its months, a version's rows, the official copy."""

    @property
    def home(self) -> Path: ...

    def months(self) -> list[str]: ...

    def latest_version(self, month: str) -> int | None: ...

    def read_version(self, month: str, version: int) -> pd.DataFrame: ...

    def final_manifest(self, month: str) -> dict[str, Any] | None: ...

    def read_final(self, month: str) -> pd.DataFrame: ...

    def rows_digest(self, month: str, version: int, final: bool = False) -> str | None: ...

    def kept(self, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]: ...


class ExportReports(ExportReads, Protocol):
    """What a version's report and standing read and write of the export store."""

    def diff(self, month: str, from_version: int, to_version: int, write: bool = True) -> dict[str, Any]: ...

    def version_path(self, month: str, version: int) -> Path: ...

    def manifest_path(self, month: str, version: int) -> Path: ...

    def report_path(self, month: str, version: int) -> Path: ...

    def write_standing(self, month: str, version: int, standing: dict[str, Any]) -> dict[str, Any]: ...

    def write_report(self, month: str, version: int, html: str) -> Path: ...
