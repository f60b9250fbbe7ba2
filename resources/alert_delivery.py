"""Raising an alert: stored in the alerts table (de-duplicated), then delivered to every sink."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from batch.alerts import Alert
from resources.alerts import AlertDispatcher, LogSink, WebhookSink, webhook_url_from_env
from resources.control_store import ControlStore


@dataclass
class AlertRaiser:
    """The alerts table is an outbox: an alert is stored first (always), then handed to the log and
    webhook sinks; one that a sink did not take stays pending and is retried with backoff
    (retry_pending, run by the alert_outbox sensor), also after a restart. Only a delivered alert
    de-duplicates the same condition raised again."""

    store: ControlStore
    dispatcher: AlertDispatcher

    def raise_alert(self, alert: Alert) -> int | None:
        """The alert's id when it was (re)sent now; None when the same alert was delivered before."""
        alert_id = self.store.add_alert(alert.month, alert.rule, alert.severity, alert.message,
                                        alert.details, alert.dedup_key)
        if alert_id is None:
            alert_id = self.store.pending_alert(alert.dedup_key)
            if alert_id is None:
                return None
        self._deliver(alert_id, alert)
        return alert_id

    def retry_pending(self, now: datetime | None = None) -> tuple[int, int]:
        """Send every undelivered alert that is due again; (tried, delivered)."""
        tried = delivered = 0
        for row in self.store.due_alerts(now):
            tried += 1
            delivered += self._deliver(row["id"], Alert.from_dict(row))
        return tried, delivered

    def _deliver(self, alert_id: int, alert: Alert) -> bool:
        results = self.dispatcher.dispatch(alert)
        deliveries: list[dict[str, Any]] = [
            {"sink": str(r.sink), "ok": bool(r.ok), "error": getattr(r, "error", None)} for r in results
        ]
        self.store.record_deliveries(alert_id, deliveries)
        for failed in (d for d in deliveries if not d["ok"]):
            self.store.record(alert.month, None, "alert_delivery_failed",
                              {"alert_id": alert_id, "sink": failed["sink"], "error": failed["error"]})
        return all(d["ok"] for d in deliveries)


def build_dispatcher(store: ControlStore, webhook_url: str | None, logger: logging.Logger) -> AlertRaiser:
    """The configured sinks: the log always, the webhook when a URL is configured."""
    sinks: list[Any] = [LogSink(logger)]
    url = webhook_url or webhook_url_from_env()
    if url:
        sinks.append(WebhookSink(url, seen=None))
    return AlertRaiser(store, AlertDispatcher(sinks))
