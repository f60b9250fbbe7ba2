"""Alerts and the sinks that deliver them: log, callback (alerts table) and webhook."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from batch.alerts import Alert
from batch.names import ALERT_WEBHOOK_VAR

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryResult:
    """Outcome of handing one alert to one sink; the caller records failed ones."""

    sink: str
    ok: bool
    error: str | None = None
    skipped: bool = False  # already delivered (de-duplicated): nothing was sent
    attempts: int = 0


class AlertSink(Protocol):
    """Anything with a name and a send() that delivers one alert or raises."""

    name: str

    def send(self, alert: Alert) -> DeliveryResult: ...


class LogSink:
    """Writes alerts to a Python logger (warning or error level by severity)."""

    def __init__(self, logger: logging.Logger | None = None, name: str = "log") -> None:
        self.logger = logger or logging.getLogger("batch_admin.alerts")
        self.name = name

    def send(self, alert: Alert) -> DeliveryResult:
        level = {"error": logging.ERROR, "info": logging.INFO}.get(alert.severity, logging.WARNING)
        self.logger.log(level, "alert %s [%s] %s: %s (dedup_key=%s)", alert.rule, alert.severity,
                        alert.month or "-", alert.message, alert.dedup_key)
        return DeliveryResult(sink=self.name, ok=True, attempts=1)


class CallbackSink:
    """Hands alerts to a function, e.g. one that writes the alerts table."""

    def __init__(self, fn: Callable[[Alert], Any], name: str = "callback") -> None:
        self.fn = fn
        self.name = name

    def send(self, alert: Alert) -> DeliveryResult:
        self.fn(alert)
        return DeliveryResult(sink=self.name, ok=True, attempts=1)


class WebhookError(RuntimeError):
    """The webhook did not accept the alert after all attempts."""


class WebhookSink:
    """POSTs alert.to_dict() as JSON; retries connection errors, timeouts, 429 and 5xx.

    An alert whose dedup_key was already delivered by this sink, or for which `seen(key)`
    returns True, is skipped. Worst-case time per alert is about
    (retries + 1) * timeout + backoff_s * (2 ** retries - 1).
    """

    def __init__(
        self,
        url: str,
        timeout: float = 5,
        retries: int = 3,
        backoff_s: float = 0.5,
        seen: Callable[[str], bool] | None = None,
        name: str = "webhook",
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must start with http:// or https://, got {url!r}")
        if retries < 0 or timeout <= 0 or backoff_s < 0:
            raise ValueError("retries and backoff_s must be >= 0 and timeout > 0")
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.backoff_s = backoff_s
        self.seen = seen
        self.name = name
        self._delivered: set[str] = set()
        self._lock = threading.Lock()

    def send(self, alert: Alert) -> DeliveryResult:
        if self._already_delivered(alert.dedup_key):
            return DeliveryResult(sink=self.name, ok=True, skipped=True)
        body = json.dumps(alert.to_dict(), sort_keys=True).encode("utf-8")
        headers = {"Content-Type": "application/json", "X-Batch-Admin-Dedup-Key": alert.dedup_key}
        last_error = ""
        attempts = 0
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            attempts += 1
            try:
                response = requests.post(self.url, data=body, headers=headers, timeout=self.timeout)
            except requests.RequestException as error:
                last_error = f"{type(error).__name__}: {error}"
                if isinstance(error, (requests.ConnectionError, requests.Timeout)):
                    continue
                break
            if 200 <= response.status_code < 300:
                with self._lock:
                    self._delivered.add(alert.dedup_key)
                return DeliveryResult(sink=self.name, ok=True, attempts=attempts)
            last_error = f"HTTP {response.status_code} from webhook"
            if not _retryable_status(response.status_code):
                break
        return DeliveryResult(sink=self.name, ok=False, error=last_error, attempts=attempts)

    def _already_delivered(self, dedup_key: str) -> bool:
        with self._lock:
            if dedup_key in self._delivered:
                return True
        if self.seen is None:
            return False
        try:
            return bool(self.seen(dedup_key))
        except Exception:  # noqa: BLE001 - an unreadable alerts table must not silence alerts
            _log.warning("seen(%r) failed; delivering the alert anyway", dedup_key, exc_info=True)
            return False


class AlertDispatcher:
    """Sends each alert to every sink; a failing sink is reported, never raised."""

    def __init__(self, sinks: Sequence[AlertSink]) -> None:
        self.sinks = list(sinks)

    def dispatch(self, alert: Alert) -> list[DeliveryResult]:
        """One DeliveryResult per sink, in sink order."""
        results = []
        for sink in self.sinks:
            name = getattr(sink, "name", type(sink).__name__)
            try:
                result = sink.send(alert)
            except Exception as error:  # noqa: BLE001 - one broken sink must not stop the others
                result = DeliveryResult(sink=name, ok=False, error=f"{type(error).__name__}: {error}")
            results.append(result)
        return results

    def dispatch_all(self, alerts: Sequence[Alert]) -> dict[str, list[DeliveryResult]]:
        """dispatch() each alert; results keyed by dedup_key."""
        return {alert.dedup_key: self.dispatch(alert) for alert in alerts}


def webhook_url_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The webhook URL from BATCH_ADMIN_ALERT_WEBHOOK, or None when unset or blank."""
    value = (os.environ if environ is None else environ).get(ALERT_WEBHOOK_VAR, "").strip()
    return value or None


def _retryable_status(status_code: int) -> bool:
    return status_code >= 500 or status_code == 429


