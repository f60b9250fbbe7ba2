"""One time format: ISO 8601 with its zone in files and JSON, local and readable in the terminal."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any

TERMINAL_FORMAT = "%Y-%m-%d %H:%M:%S %Z"


def aware(value: datetime | str) -> datetime:
    """A datetime with its zone; a naive one (SQLite returns them) or an ISO text without a zone is UTC."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def iso(value: datetime | str) -> str:
    """ISO 8601 to the second with the zone, as files and JSON carry times (2026-12-07T13:05:12+00:00)."""
    return aware(value).isoformat(timespec="seconds")


def local(value: datetime | str | None, tz: tzinfo | None = None) -> str:
    """A time as the terminal shows it: in the local zone (or `tz`), to the second, zone named
    (2026-12-07 14:05:12 CET); '–' for none."""
    if value is None or value == "":
        return "–"
    return aware(value).astimezone(tz).strftime(TERMINAL_FORMAT)


def json_default(value: Any) -> str:
    """json.dumps' fallback: datetimes in ISO 8601 with zone, anything else as its text."""
    return iso(value) if isinstance(value, datetime) else str(value)
