"""The versions room: a run's version of a month, recorded with its parameters, metrics and inputs."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from batch.errors import ControlError
from batch.lifecycle import PHASE_PROPOSED
from resources.control_store.lock_room import LockRoom
from resources.control_store.plumbing import _aware, _dumps, utcnow
from resources.control_store.tables import (
    months,
    versions,
)
from resources.control_store.ticket_room import TicketRoom


def _version_item(row: Any) -> dict[str, Any]:
    item = dict(row)
    item["params"] = json.loads(item.pop("params_json"))
    item["metrics"] = json.loads(item.pop("metrics_json"))
    item["created_at"] = _aware(item["created_at"])
    return item


class VersionRoom(LockRoom, TicketRoom):
    """A month's versions."""

    def versions(self, month: str) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(sa.select(versions).where(versions.c.month == month)
                                .order_by(versions.c.version)).mappings().all()
        return [_version_item(r) for r in rows]

    def history(self, months_wanted: list[str]) -> dict[str, dict[str, Any]]:
        """Each of these months' versions (as `versions` gives them) and final version, in one read;
        months without a version are left out."""
        with self.read() as conn:
            rows = conn.execute(sa.select(versions).where(versions.c.month.in_(months_wanted))
                                .order_by(versions.c.month, versions.c.version)).mappings().all()
            finals = dict(conn.execute(sa.select(months.c.month, months.c.final_version)  # type: ignore[arg-type]
                                       .where(months.c.month.in_(months_wanted))).all())
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            item = _version_item(r)
            out.setdefault(item["month"], {"versions": [], "final_version": finals.get(item["month"])})
            out[item["month"]]["versions"].append(item)
        return out

    def check_can_run(self, month: str, actor: str | None, note: str | None) -> None:
        """Refuse a run that would be version 2 or later without a change note."""
        self.guard_write(month, actor, "run")
        if self.versions(month) and not (note and note.strip()):
            raise ControlError(
                f"Month {month} already has version {len(self.versions(month))}; from version 2 on "
                f"a run needs a change note (--note TEXT, or the run tag batch_admin/note)."
            )

    def record_version(self, month: str, version: int, actor: str | None, note: str | None,
                       run_id: str | None, export_path: str, params: dict[str, Any],
                       metrics: dict[str, Any], input_fingerprint: str | None) -> None:
        with self.write() as conn:
            row = self._month_row(conn, month)
            self._check_not_finalized(row)
            conn.execute(versions.insert().values(
                month=month, version=version, created_at=utcnow(), actor=actor, note=note,
                run_id=run_id, export_path=export_path, status="proposed",
                params_json=_dumps(params), metrics_json=_dumps(metrics),
                input_fingerprint=input_fingerprint))
            self._set_phase(conn, month, PHASE_PROPOSED)
            self._append_audit(conn, month, actor, "run",
                               {"version": version, "run_id": run_id, "note": note,
                                "export_path": export_path}, ticket_json=self._ticket_json(conn, month, run_id))
