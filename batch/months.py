"""Month keys (YYYY-MM): the one parser and validator, and the months the product plans for."""

from __future__ import annotations

import re
from datetime import date

# ASCII digits only: \d would also accept other scripts' digits (e.g. fullwidth ２０２６).
MONTH_RE = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
FIRST_MONTH = "2025-01"
# Planning happens ahead: the current month and the next one are partitions too.
MONTHS_AHEAD = 1
# A month's data holds its days as nanosecond timestamps (pandas, Parquet), which reach from
# 1677-09-21 to 2262-04-11: the months of these years fit whole.
DATA_YEARS = (1678, 2261)


class MonthError(ValueError):
    """A month key that is malformed or outside the planned months."""


def check_month(month: str | None) -> str:
    """A well-formed YYYY-MM key (matched in full), else MonthError."""
    if not isinstance(month, str) or not MONTH_RE.fullmatch(month):
        raise MonthError(f"Month {month!r} must look like YYYY-MM (e.g. 2026-12).")
    return month


def check_data_month(month: str | None) -> str:
    """A well-formed month whose days a timestamp can hold (demo data, landing), else MonthError."""
    check_month(month)
    if not DATA_YEARS[0] <= int(str(month)[:4]) <= DATA_YEARS[1]:
        raise MonthError(f"Month {month} is outside the months data can be held for "
                         f"({DATA_YEARS[0]}-01 .. {DATA_YEARS[1]}-12).")
    return str(month)


def planned_months(today: date | None = None) -> list[str]:
    """Every month key from FIRST_MONTH to next month (the monthly partitions)."""
    today = today or date.today()
    first, last = _index(FIRST_MONTH), today.year * 12 + today.month - 1 + MONTHS_AHEAD
    return [_key(index) for index in range(first, last + 1)]


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
    return _key(_index(check_month(month)) - 1)


def next_month(month: str) -> str:
    """The month after a YYYY-MM key."""
    return _key(_index(check_month(month)) + 1)


def trailing_months(month: str, count: int) -> list[str]:
    """The `count` months before `month`, most recent first."""
    index = _index(check_month(month))
    return [_key(index - back) for back in range(1, count + 1)]


# Plain month arithmetic (months since year 0): the CLI checks months without importing pandas.
def _index(month: str) -> int:
    year, number = month.split("-")
    return int(year) * 12 + int(number) - 1


def _key(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"
