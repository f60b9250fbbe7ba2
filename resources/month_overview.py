"""Every month of the control store at once, for the admin view's months page: three statements (the months
with their lock and lease, the alert counts, every version's stored metrics), not five queries a month."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from batch.health import overview_line
from resources.control_store import (
    ControlStore,
    LeaseInfo,
    LockInfo,
    alerts,
    leases,
    locks,
    months,
    versions,
)
from resources.control_store.lock_room import _lease_of
from resources.control_store.plumbing import _aware


@dataclass(frozen=True)
class MonthLine:
    """A month's overview line (batch.health.overview_line) with its lock and its run's lease."""

    line: dict[str, Any]
    lock: LockInfo | None
    lease: LeaseInfo | None


def month_lines(store: ControlStore, extra_months: Sequence[str] = ()) -> dict[str, MonthLine]:
    """Every month the control store knows, and `extra_months` (months with exports only, the next month),
    by month, in one read: the months with their lock and lease, the alert counts, the versions."""
    query = (sa.select(months.c.month, months.c.phase, months.c.final_version,
                       locks.c.holder, locks.c.admins_json, locks.c.acquired_at.label("lock_acquired_at"),
                       locks.c.expires_at.label("lock_expires_at"),
                       leases.c.run_id, leases.c.acquired_at, leases.c.expires_at, leases.c.heartbeat_at)
             .select_from(months.outerjoin(locks, locks.c.month == months.c.month)
                          .outerjoin(leases, leases.c.month == months.c.month)))
    counts = (sa.select(alerts.c.month, sa.func.count(),
                        sa.func.sum(sa.case((alerts.c.severity == "error", 1), else_=0)))
              .group_by(alerts.c.month))
    with store.read() as conn:
        rows = {row["month"]: dict(row) for row in conn.execute(query).mappings()}
        alert_counts = {month: (int(total), int(errors or 0)) for month, total, errors in conn.execute(counts)}
        stored: dict[str, list[dict[str, Any]]] = {}
        for month, version, metrics in conn.execute(sa.select(versions.c.month, versions.c.version,
                                                              versions.c.metrics_json)
                                                    .order_by(versions.c.month, versions.c.version)):
            stored.setdefault(month, []).append({"version": version, "metrics": json.loads(metrics)})
    found = {}
    for month in sorted(set(rows) | set(stored) | set(extra_months)):
        row = rows.get(month)
        if row is None:  # versions, exports or the next month without a months row: read as the store reads one
            lock, lease, row = store.lock_info(month), store.lease(month), store.month(month)
        else:
            lock = LockInfo(month, row["holder"], json.loads(row["admins_json"]), _aware(row["lock_acquired_at"]),
                            _aware(row["lock_expires_at"])) if row["holder"] is not None else None
            lease = _lease_of({"month": month, **{key: row[key] for key in ("run_id", "acquired_at", "expires_at",
                                                                           "heartbeat_at")}}) \
                if row["run_id"] is not None else None
        found[month] = MonthLine(overview_line(row, stored.get(month, []), lock.holder if lock else None,
                                               *alert_counts.get(month, (0, 0))), lock, lease)
    return found
