"""A month's control-store records as one transaction read them: what a version's report and its trend
checks need (the month, its requests and audit entries, the versions of the month and the ones before
it, the audit chain's head). The version step reads them in the transaction that records the version,
then builds its report from them without going back to the store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from batch.approvals import Request
from batch.months import trailing_months
from batch.ports import ReportRecords

# The months before a version's month that its report reads: its trend (batch.health.TREND_MONTHS, the
# month included) and the trailing metrics of the trend checks (batch.plan.trailing_metrics).
MONTHS_BACK = 6


class RecordsSource(ReportRecords, Protocol):
    """The store's reads that MonthRecords gathers (one transaction when read inside `ControlStore.unit`)."""

    def audit_anchor(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class MonthRecords:
    """One month's records, read once; a read of anything else is refused (LookupError), never guessed."""

    of_month: str
    row: dict[str, Any]
    month_requests: tuple[Request, ...]
    audit: tuple[dict[str, Any], ...]
    known: dict[str, dict[str, Any]]
    months_read: frozenset[str]
    anchor: dict[str, Any]

    @classmethod
    def read(cls, store: RecordsSource, month: str, months_back: int = MONTHS_BACK) -> MonthRecords:
        wanted = [*reversed(trailing_months(month, months_back)), month]
        return cls(of_month=month, row=store.month(month), month_requests=tuple(store.requests(month)),
                   audit=tuple(store.audit_entries(month)), known=store.history(wanted),
                   months_read=frozenset(wanted), anchor=store.audit_anchor())

    def _own(self, month: str | None) -> None:
        if month != self.of_month:
            raise LookupError(f"These records are of {self.of_month}, not {month or 'every month'}.")

    def month(self, month: str) -> dict[str, Any]:
        self._own(month)
        return dict(self.row)

    def requests(self, month: str | None = None) -> list[Request]:
        self._own(month)
        return list(self.month_requests)

    def audit_entries(self, month: str | None = None) -> list[dict[str, Any]]:
        self._own(month)
        return list(self.audit)

    def history(self, months_wanted: list[str]) -> dict[str, dict[str, Any]]:
        missing = set(months_wanted) - self.months_read
        if missing:
            raise LookupError(f"These records hold the versions of {', '.join(sorted(self.months_read))}, not of "
                              f"{', '.join(sorted(missing))}.")
        return {month: found for month, found in self.known.items() if month in months_wanted}

    def audit_anchor(self) -> dict[str, Any]:
        """The audit chain's head when the records were read."""
        return dict(self.anchor)
