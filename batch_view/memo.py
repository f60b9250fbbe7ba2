"""Results of the core's slower reads, kept while what they are computed from is unchanged.

A month's health and inputs read the landed tables and the planned version's rows (0.5-1 s at
20,000 requests); a page shown again, or after a change that does not touch them, must not pay that.
Each result's key names what it depends on: the landed files (names, sizes, times), the version (a
version, once written, never changes) and the official copy's file. The landed tables themselves
(several MB a month) are kept apart, a few at a time, so that one read serves both the inputs
section and the health of a month.
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
# Landed tables of this many months are kept (3 MB each at 20,000 requests and 1,000 resources).
BIG_SIZE = 12


def landing_key(src: Sources, month: str) -> tuple[Hashable, ...]:
    """What a month's landed tables depend on: its landing files' names, sizes and modification times."""
    landing = src.settings.landing / month
    return (month, tuple(sorted((path.name, stat.st_size, stat.st_mtime_ns) for path in landing.iterdir()
                                if path.is_file() for stat in [path.stat()])) if landing.is_dir() else ())


def month_state(src: Sources, month: str) -> tuple[Hashable, ...]:
    """What a version report's figures depend on, cheaply read (a few directory listings and one query)."""
    final = src.exports.final_path(month)
    rows = {row["month"]: (row["phase"], row["final_version"]) for row in src.store.months()}
    window = [*trailing_months(month, TREND_MONTHS - 1), month]
    return (landing_key(src, month), final.resolve().name if final.exists() else None,
            tuple((key, rows.get(key), tuple(src.exports.versions(key))) for key in window))


class Memo:
    """Two small least-recently-used maps from a key to a computed result (one for big results); one
    computation at a time (a computation may itself use the memo)."""

    def __init__(self, size: int = MEMO_SIZE, big_size: int = BIG_SIZE):
        self.sizes = {False: size, True: big_size}
        self.found: dict[bool, OrderedDict[Hashable, Any]] = {False: OrderedDict(), True: OrderedDict()}
        self.lock = threading.RLock()

    def get(self, key: Hashable, compute: Callable[[], T], big: bool = False) -> T:
        found = self.found[big]
        with self.lock:
            if key not in found:
                found[key] = compute()
                while len(found) > self.sizes[big]:
                    found.popitem(last=False)
            found.move_to_end(key)
            return found[key]
