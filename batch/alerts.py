"""An alert: what rule fired, how bad, for which month; the value every alert rule returns."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

SEVERITIES = ("info", "warning", "error")


@dataclass(frozen=True)
class Alert:
    """One alert: what rule fired, how bad, for which month, and a key that makes it fire once."""

    rule: str
    severity: str  # "info" | "warning" | "error"
    month: str | None  # None for alerts not tied to a month (too many run failures)
    message: str  # one sentence
    details: dict[str, Any] = field(default_factory=dict)
    dedup_key: str = ""
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")
        if not self.dedup_key:
            raise ValueError("an alert needs a dedup_key")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: the webhook body and the alerts-table row."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "month": self.month,
            "message": self.message,
            "details": json.loads(json.dumps(self.details, default=json_default, sort_keys=True)),
            "dedup_key": self.dedup_key,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        """Inverse of to_dict (e.g. for alerts read back from the alerts table)."""
        created_at = data.get("created_at")
        if isinstance(created_at, str):
            created_at = datetime.fromisoformat(created_at)
        return cls(
            rule=data["rule"], severity=data["severity"], month=data.get("month"),
            message=data["message"], details=dict(data.get("details") or {}),
            dedup_key=data["dedup_key"],
            created_at=created_at or datetime.now(UTC),
        )


def json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if hasattr(value, "item"):  # numpy / pandas scalars
        return value.item()
    return str(value)
