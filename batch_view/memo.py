"""Results of the core's slower reads kept while the month they describe is unchanged.

A month's health, its inputs and a version's report read the landed tables and the version's rows
(0.5-1 s at 2,000 requests, 1-2 s at 20,000, measured by bench/view.py); a page shown again, or
polled, must not pay that each time. The key says what those results depend on: the landed files
(names, sizes, times), the official copy, and the phase, final version and versions of the month
and of the months its trend shows (a version, once written, never changes).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from batch.health import TREND_MONTHS
from batch.months import trailing_months
from batch_view.sources import Sources

T = TypeVar("T")
MEMO_SIZE = 64


def month_state(src: Sources, month: str) -> tuple[Hashable, ...]:
    """What a month's figures depend on, cheaply read (a few directory listings and one query)."""
    landing = src.settings.landing / month
    files = tuple(sorted((path.name, stat.st_size, stat.st_mtime_ns) for path in landing.iterdir()
                         if path.is_file() for stat in [path.stat()])) if landing.is_dir() else ()
    final = src.exports.final_path(month)
    rows = {row["month"]: (row["phase"], row["final_version"]) for row in src.store.months()}
    window = [*trailing_months(month, TREND_MONTHS - 1), month]
    return (month, files, final.resolve().name if final.exists() else None,
            tuple((key, rows.get(key), tuple(src.exports.versions(key))) for key in window))


class Memo:
    """A small least-recently-used map from (what, state) to a computed result; one computation at a time."""

    def __init__(self, size: int = MEMO_SIZE):
        self.size = size
        self.found: OrderedDict[Hashable, Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self.lock:
            if key not in self.found:
                self.found[key] = compute()
                while len(self.found) > self.size:
                    self.found.popitem(last=False)
            self.found.move_to_end(key)
            return self.found[key]
