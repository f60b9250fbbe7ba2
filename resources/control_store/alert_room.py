"""The alerts room: alerts raised once per dedup key, and their delivery outbox with backoff."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from resources.control_store.plumbing import StoreBase, _aware, _dumps, utcnow
from resources.control_store.tables import (
    ALERT_RETRY_FIRST_S,
    ALERT_RETRY_MAX_S,
    alerts,
)


class AlertRoom(StoreBase):
    """Alerts and their delivery outbox."""

    def add_alert(self, month: str | None, rule: str, severity: str, message: str,
                  details: dict[str, Any], dedup_key: str, audit_actor: str | None = None,
                  audit_action: str = "alert") -> int | None:
        """Store an alert unless one with the same dedup key exists; returns its id."""
        with self.write() as conn:
            return self._add_alert(conn, month, rule, severity, message, details, dedup_key, audit_actor,
                                   audit_action)

    def _add_alert(self, conn: Connection, month: str | None, rule: str, severity: str, message: str,
                   details: dict[str, Any], dedup_key: str, audit_actor: str | None = None,
                   audit_action: str = "alert") -> int | None:
        seen = conn.execute(sa.select(alerts.c.id).where(alerts.c.dedup_key == dedup_key)).first()
        if seen is not None:
            return None
        new_id = conn.execute(alerts.insert().values(
            month=month, rule=rule, severity=severity, message=message,
            details_json=_dumps(details), dedup_key=dedup_key, created_at=utcnow(),
            deliveries_json="[]")).inserted_primary_key[0]  # type: ignore[index]
        self._append_audit(conn, month, audit_actor, audit_action, {"rule": rule, "severity": severity,
                                                                    "message": message})
        return new_id

    def record_deliveries(self, alert_id: int, deliveries: list[dict[str, Any]]) -> None:
        """One delivery attempt: delivered when every sink took the alert, else due again after a backoff."""
        delivered = all(d.get("ok") for d in deliveries)
        with self.write() as conn:
            row = conn.execute(sa.select(alerts.c.attempts, alerts.c.deliveries_json)
                               .where(alerts.c.id == alert_id)).mappings().one()
            attempts = int(row["attempts"]) + 1
            now = utcnow()
            history = [*json.loads(row["deliveries_json"] or "[]"), *({**d, "at": now.isoformat()} for d in deliveries)]
            wait = min(ALERT_RETRY_FIRST_S * 2 ** (attempts - 1), ALERT_RETRY_MAX_S)
            conn.execute(alerts.update().where(alerts.c.id == alert_id).values(
                deliveries_json=_dumps(history), attempts=attempts,
                delivered_at=now if delivered else None,
                next_attempt_at=None if delivered else now + timedelta(seconds=wait)))

    def alerts(self, month: str | None = None, pending: bool = False) -> list[dict[str, Any]]:
        """Alerts in the order raised (of one month, or all); pending: only those not yet delivered."""
        rows = self._rows_by_month(alerts, month)
        if pending:
            rows = [r for r in rows if r["delivered_at"] is None]
        for r in rows:
            r["details"] = json.loads(r.pop("details_json"))
            r["deliveries"] = json.loads(r.pop("deliveries_json"))
            for key in ("created_at", "delivered_at", "next_attempt_at"):
                r[key] = _aware(r[key])
        return rows

    def pending_alert(self, dedup_key: str) -> int | None:
        """The id of the undelivered alert with this key, if any."""
        with self.read() as conn:
            return conn.execute(sa.select(alerts.c.id).where(sa.and_(
                alerts.c.dedup_key == dedup_key, alerts.c.delivered_at.is_(None))).limit(1)).scalar()

    def due_alerts(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Undelivered alerts whose next attempt is due."""
        now = now or utcnow()
        return [a for a in self.alerts(pending=True)
                if a["next_attempt_at"] is None or a["next_attempt_at"] <= now]
