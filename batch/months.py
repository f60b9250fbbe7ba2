"""Month keys (YYYY-MM): the one parser and validator, and the months the product plans for."""

from __future__ import annotations

import re
from datetime import date

import pandas as pd

# ASCII digits only: \d would also accept other scripts' digits (e.g. fullwidth ２０２６).
MONTH_RE = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
FIRST_MONTH = "2025-01"
# Planning happens ahead: the current month and the next one are partitions too.
MONTHS_AHEAD = 1


class MonthError(ValueError):
    """A month key that is malformed or outside the planned months."""


def check_month(month: str | None) -> str:
    """A well-formed YYYY-MM key (matched in full), else MonthError."""
    if not isinstance(month, str) or not MONTH_RE.fullmatch(month):
        raise MonthError(f"Month {month!r} must look like YYYY-MM (e.g. 2026-12).")
    return month


def planned_months(today: date | None = None) -> list[str]:
    """Every month key from FIRST_MONTH to next month (the monthly partitions)."""
    today = today or date.today()
    last = pd.Period(today, freq="M") + MONTHS_AHEAD
    return [p.strftime("%Y-%m") for p in pd.period_range(FIRST_MONTH, last, freq="M")]


def check_planned_month(month: str | None, today: date | None = None) -> str:
    """A well-formed month that is one of the planned months (runs need a partition)."""
    check_month(month)
    keys = planned_months(today)
    if month not in keys:
        raise MonthError(f"Month {month} is not one of the monthly partitions "
                         f"({keys[0]} .. {keys[-1]}, next month included).")
    return month


def previous_month(month: str) -> str:
    """The month before a YYYY-MM key."""
    return (pd.Period(check_month(month), freq="M") - 1).strftime("%Y-%m")


def next_month(month: str) -> str:
    """The month after a YYYY-MM key."""
    return (pd.Period(check_month(month), freq="M") + 1).strftime("%Y-%m")


def trailing_months(month: str, count: int) -> list[str]:
    """The `count` months before `month`, most recent first."""
    period = pd.Period(check_month(month), freq="M")
    return [(period - back).strftime("%Y-%m") for back in range(1, count + 1)]
