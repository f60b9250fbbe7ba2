"""Raising an alert: stored in the alerts table (de-duplicated), then delivered to every sink."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from resources.alerts import Alert, AlertDispatcher, LogSink, WebhookSink, webhook_url_from_env
from resources.control_store import ControlStore


@dataclass
class AlertRaiser:
    """Writes the alerts table first (always), then the log and webhook sinks; never raises for a sink."""

    store: ControlStore
    dispatcher: AlertDispatcher

    def raise_alert(self, alert: Alert) -> int | None:
        alert_id = self.store.add_alert(alert.month, alert.rule, alert.severity, alert.message,
                                        alert.details, alert.dedup_key)
        if alert_id is None:
            return None
        results = self.dispatcher.dispatch(alert)
        deliveries: list[dict[str, Any]] = [
            {"sink": str(r.sink), "ok": bool(r.ok), "error": getattr(r, "error", None)} for r in results
        ]
        self.store.record_deliveries(alert_id, deliveries)
        for failed in (d for d in deliveries if not d["ok"]):
            self.store.record(alert.month, None, "alert_delivery_failed",
                              {"alert_id": alert_id, "sink": failed["sink"], "error": failed["error"]})
        return alert_id


def build_dispatcher(store: ControlStore, webhook_url: str | None, logger: logging.Logger) -> AlertRaiser:
    """The configured sinks: the log always, the webhook when a URL is configured."""
    sinks: list[Any] = [LogSink(logger)]
    url = webhook_url or webhook_url_from_env()
    if url:
        sinks.append(WebhookSink(url, seen=None))
    return AlertRaiser(store, AlertDispatcher(sinks))
