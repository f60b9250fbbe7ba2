"""The parameters room: a month's parameters, its adjustments (pins and exclusions), the run snapshots
that fix a run's inputs at its first step, and the capacity plans."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from batch.adjustment_log import InForce, check_change, in_force
from batch.identity import Signed
from batch.lifecycle import PHASE_OPEN, PHASE_PLANNING
from resources.control_store.lock_room import LockRoom
from resources.control_store.plumbing import _aware, _dumps, utcnow
from resources.control_store.tables import (
    adjustments,
    leases,
    months,
    plans,
    run_snapshots,
)
from resources.control_store.ticket_room import TicketRoom


class ParamRoom(LockRoom, TicketRoom):
    """Parameters, adjustments, run snapshots and plans."""

    def params(self, month: str) -> dict[str, Any]:
        return json.loads(self.month(month)["params_json"] or "{}")

    def set_params(self, signed: Signed) -> dict[str, Any]:
        """Change a month's parameters (details: changes; a value None unsets the key: its default
        counts again), signed by an admin."""
        month, changes = str(signed.month), dict(signed.details.get("changes") or {})
        with self._signed(signed, "params", month) as (conn, roles):
            actor = roles.require_admin(signed.actor, f"change parameters of {month}")
            row = self._month_row(conn, month)
            self._check_not_finalized(row)
            self._check_lock(conn, month, actor, "change parameters of")
            current = json.loads(row["params_json"] or "{}")
            before = {k: current.get(k) for k in changes}
            current.update({k: v for k, v in changes.items() if v is not None})
            for key in (k for k, v in changes.items() if v is None):
                current.pop(key, None)
            conn.execute(months.update().where(months.c.month == month).values(
                params_json=_dumps(current), updated_at=utcnow()))
            self._append_audit(conn, month, actor, "params", {"changes": changes, "before": before}, signed)
        return current

    def add_adjustment(self, signed: Signed) -> None:
        """Pin, exclude, unpin, include or clear (details: kind, request_id, resource_id, note), signed by an
        admin; batch.adjustment_log says what may be added."""
        month, d = str(signed.month), signed.details
        kind, resource_id, note = d.get("kind"), d.get("resource_id"), d.get("note")
        with self._signed(signed, "adjust", month) as (conn, roles):
            actor = roles.require_admin(signed.actor, f"adjust {month}")
            row = self._month_row(conn, month)
            self._check_not_finalized(row)
            self._check_lock(conn, month, actor, "adjust")
            request_id = check_change(self._in_force(conn, month), str(kind), d.get("request_id"), resource_id, note)
            conn.execute(adjustments.insert().values(
                month=month, kind=kind, request_id=request_id, resource_id=resource_id,
                note=note, actor=actor, created_at=utcnow()))
            self._append_audit(conn, month, actor, "adjust",
                               {"kind": kind, "request_id": d.get("request_id"),
                                "resource_id": resource_id, "note": note}, signed)

    def adjustments(self, month: str) -> list[dict[str, Any]]:
        with self.read() as conn:
            return [dict(r) for r in conn.execute(
                sa.select(adjustments).where(adjustments.c.month == month)
                .order_by(adjustments.c.id)).mappings()]

    def pins_and_exclusions(self, month: str) -> tuple[dict[str, str], set[str]]:
        """The pins and exclusions in force (batch.adjustment_log.in_force)."""
        with self.read() as conn:
            return self._pins_and_exclusions(conn, month)

    def adjustments_in_force(self, month: str) -> InForce:
        """The pins and exclusions in force, with who set each, when and why."""
        with self.read() as conn:
            return self._in_force(conn, month)

    def _in_force(self, conn: Connection, month: str) -> InForce:
        rows = conn.execute(sa.select(adjustments).where(adjustments.c.month == month)
                            .order_by(adjustments.c.id)).mappings()
        return in_force({**r, "created_at": _aware(r["created_at"])} for r in rows)

    def _pins_and_exclusions(self, conn: Connection, month: str) -> tuple[dict[str, str], set[str]]:
        state = self._in_force(conn, month)
        return state.pinned(), set(state.exclusions)

    def run_snapshot(self, month: str, run_id: str, actor: str | None, note: str | None) -> dict[str, Any]:
        """The run's inputs: recorded by its first call, read back unchanged by every later one."""
        with self.write() as conn:
            stored = conn.execute(sa.select(run_snapshots.c.snapshot_json)
                                  .where(run_snapshots.c.run_id == run_id)).scalar()
            if stored is not None:
                return json.loads(stored)
            row = self._month_row(conn, month)
            pins, excluded = self._pins_and_exclusions(conn, month)
            now = utcnow()
            snapshot = {"month": month, "run_id": run_id, "actor": actor, "note": note,
                        "params": json.loads(row["params_json"] or "{}"), "pins": pins,
                        "exclusions": sorted(excluded), "taken_at": now.isoformat()}
            conn.execute(run_snapshots.insert().values(run_id=run_id, month=month, taken_at=now,
                                                       snapshot_json=_dumps(snapshot)))
            return snapshot

    def resume_run(self, month: str, run_id: str, what: str) -> dict[str, Any] | None:
        """A later step of an admitted run, in one read: the run's snapshot when the run holds the
        month's lease and took its snapshot (its first step was admitted: ticket, roles, lock, lease),
        after checking what can change during a run (the final lock, the temporary lock); None when
        the run was not admitted yet (its first step goes through the whole admission)."""
        with self.read() as conn:
            holder = conn.execute(sa.select(leases.c.run_id).where(leases.c.month == month)).scalar()
            stored = conn.execute(sa.select(run_snapshots.c.snapshot_json)
                                  .where(run_snapshots.c.run_id == run_id)).scalar()
            if holder != run_id or stored is None:
                return None
            snapshot = json.loads(stored)
            row = conn.execute(sa.select(months).where(months.c.month == month)).mappings().first()
            if row is not None:
                self._check_not_finalized(dict(row))
            self._check_lock(conn, month, snapshot.get("actor"), what)
        return snapshot

    def run_snapshots(self, month: str) -> list[dict[str, Any]]:
        """The snapshots of a month's runs, oldest first."""
        with self.read() as conn:
            rows = conn.execute(sa.select(run_snapshots.c.snapshot_json).where(run_snapshots.c.month == month)
                                .order_by(run_snapshots.c.taken_at)).scalars().all()
        return [json.loads(row) for row in rows]

    def record_plan(self, month: str, actor: str | None, run_id: str | None,
                    summary: dict[str, Any]) -> None:
        with self.write() as conn:
            row = self._month_row(conn, month)
            self._check_not_finalized(row)
            conn.execute(plans.insert().values(month=month, created_at=utcnow(), actor=actor,
                                               run_id=run_id, summary_json=_dumps(summary)))
            if row["phase"] == PHASE_OPEN:
                self._set_phase(conn, month, PHASE_PLANNING)
            self._append_audit(conn, month, actor, "plan", {"run_id": run_id, **summary},
                               ticket_json=self._ticket_json(conn, month, run_id))

    def latest_plan(self, month: str) -> dict[str, Any] | None:
        with self.read() as conn:
            row = conn.execute(sa.select(plans).where(plans.c.month == month)
                               .order_by(plans.c.id.desc()).limit(1)).mappings().first()
        if row is None:
            return None
        item = dict(row)
        item["summary"] = json.loads(item.pop("summary_json"))
        return item
