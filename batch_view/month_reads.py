"""A month's inputs and health for its page, each file read once and each result kept while its sources last.

The health is batch.health.month_health's, put together from the same pieces (planned_choice, kept_landing,
version_figures, health_of). The landing's summary and a version's figures are kept on disk under the digests
of the files they come from (the run's export step writes them with the version: resources/derived_files.py),
so the first view of a month after a new version, or after the view starts, reads a small JSON file instead
of 20,000 rows. In this process they are also kept per landed files (names, sizes, times), version and
official copy, so a change that touches neither (a lock, an alert, a request, a new version of another
month) costs the page a few queries. When nothing was kept (a home written by an older version of the
product), the landed tables are read once for both the summary and the figures.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from batch.health import (
    LandedTables,
    health_of,
    kept_landing,
    landed_or_problem,
    planned_choice,
    read_landing,
    version_figures,
)
from batch.inputs import InputError, InputTables
from batch.landing import landed_fingerprint
from batch_view.memo import Memo, landing_key
from batch_view.sources import Sources


def input_tables(src: Sources, memo: Memo, month: str, key: Hashable) -> InputTables | InputError:
    """The month's landed tables as load_landing reads them, or why they break the landing contract."""
    return memo.get(("tables", key), lambda: read_landing(src.exports.home, month), big=True)


def fingerprint(src: Sources, memo: Memo, month: str, key: Hashable) -> str | None:
    """The landed files' fingerprint (batch.inputs.landed_fingerprint), once per state of the files."""
    return memo.get(("fingerprint", key), lambda: landed_fingerprint(src.exports.home, month))


def landing_context(src: Sources, memo: Memo, month: str, key: Hashable | None = None) -> dict[str, Any]:
    """The landed tables with their row counts, or why they break the landing contract (table, column, rule, rows)."""
    key = key or landing_key(src, month)
    return memo.get(("landing", key), lambda: kept_landing(
        src.exports, month, fingerprint(src, memo, month, key), lambda: input_tables(src, memo, month, key)))


def month_health(src: Sources, memo: Memo, month: str) -> dict[str, Any]:
    """batch.health.month_health of the month, its figures kept per (version, landed files, official copy)."""
    store, exports = src.store, src.exports
    key = landing_key(src, month)
    landing = landing_context(src, memo, month, key)
    chosen = planned_choice(store, exports, month)
    figures = None
    if chosen is not None:
        final = exports.final_path(month)
        copy = (final.resolve().name, final.stat().st_mtime_ns) if chosen[1] and final.exists() else None

        def landed() -> LandedTables:
            return landed_or_problem(input_tables(src, memo, month, key))

        figures = memo.get(("figures", key, chosen, copy), lambda: version_figures(
            exports, month, chosen, fingerprint(src, memo, month, key), lambda: memo.get(("landed", key), landed, big=True)))
    return health_of(store, month, chosen, landing["error"], figures)
