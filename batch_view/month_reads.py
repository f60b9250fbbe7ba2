"""A month's inputs and health for its page, each file read once and each result kept while its sources last.

The health is batch.health.month_health's, put together from the same pieces (planned_choice,
planned_figures, health_of): the landed tables are read once for both the inputs section and the
health; the figures of a version (its rows against the landed tables) are kept per version, landed
files and official copy, so a change that touches neither (a lock, an alert, a request, a new version
of another month) costs the page a few queries, not a read of 20,000 rows.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from batch.health import LandedTables, chosen_rows, health_of, landed_of, planned_choice, planned_figures
from batch.inputs import InputError, InputTables, load_landing
from batch_view.memo import Memo, landing_key
from batch_view.sources import Sources


def input_tables(src: Sources, memo: Memo, month: str, key: Hashable) -> InputTables | InputError:
    """The month's landed tables as load_landing reads them, or why they break the landing contract."""

    def read() -> InputTables | InputError:
        try:
            return load_landing(src.exports.home, month)
        except InputError as exc:
            return exc

    return memo.get(("tables", key), read, big=True)


def landing_context(src: Sources, memo: Memo, month: str, key: Hashable | None = None) -> dict[str, Any]:
    """The landed tables with their row counts, or why they break the landing contract (table, column, rule, rows)."""
    key = key or landing_key(src, month)

    def summary() -> dict[str, Any]:
        tables = input_tables(src, memo, month, key)
        if isinstance(tables, InputError):
            return {"ok": False, "error": str(tables), "table": tables.table, "column": tables.column,
                    "rule": tables.rule, "count": tables.count, "rows": tables.rows, "tables": []}
        return {"ok": True, "error": None, "fingerprint": tables.fingerprint,
                "tables": [{"table": name, "rows": len(frame), "file": tables.files.get(name)}
                           for name, frame in tables.present().items()]}

    return memo.get(("landing", key), summary)


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
            tables = input_tables(src, memo, month, key)
            return LandedTables(problem=str(tables)) if isinstance(tables, InputError) else landed_of(tables)

        def compute() -> dict[str, Any]:
            return planned_figures(chosen_rows(exports, month, chosen), memo.get(("landed", key), landed, big=True))

        figures = memo.get(("figures", key, chosen, copy), compute)
    return health_of(store, month, chosen, landing["error"], figures)
