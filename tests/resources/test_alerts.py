"""Alert sinks: a real local HTTP server for the webhook; log and callback sinks; the dispatcher."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from resources.alerts import (
    ALERT_WEBHOOK_VAR,
    Alert,
    AlertDispatcher,
    CallbackSink,
    DeliveryResult,
    LogSink,
    WebhookSink,
    webhook_url_from_env,
)

FAST = {"timeout": 2, "backoff_s": 0.01}


def make_alert(dedup_key: str = "stale_lock:2025-03:alice", severity: str = "warning") -> Alert:
    return Alert(rule="stale_lock", severity=severity, month="2025-03",
                 message="The lock on 2025-03 held by alice expired.",
                 details={"holder": "alice", "expires_at": datetime(2025, 3, 1, tzinfo=UTC)},
                 dedup_key=dedup_key, created_at=datetime(2025, 3, 2, tzinfo=UTC))


@dataclass
class Receiver:
    """A local webhook endpoint: answers with `statuses` in turn (then 200), records bodies."""

    url: str
    statuses: list[int] = field(default_factory=list)
    bodies: list[dict] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)
    hits: int = 0
    delays: list[float] = field(default_factory=list)  # seconds to stall before answering, in turn


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.hits += 1
            if state.delays:
                time.sleep(state.delays.pop(0))
            status = state.statuses.pop(0) if state.statuses else 200
            if status == 200:
                state.bodies.append(json.loads(body))
                state.headers.append(dict(self.headers))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def test_webhook_posts_the_alert_as_json(receiver):
    result = WebhookSink(receiver.url, **FAST).send(make_alert())

    assert result == DeliveryResult(sink="webhook", ok=True, attempts=1)
    assert receiver.bodies == [make_alert().to_dict()]
    assert receiver.bodies[0]["details"]["expires_at"] == "2025-03-01T00:00:00+00:00"
    assert receiver.headers[0]["Content-Type"] == "application/json"
    assert receiver.headers[0]["X-Batch-Admin-Dedup-Key"] == "stale_lock:2025-03:alice"


def test_webhook_retries_after_a_500_then_succeeds(receiver):
    receiver.statuses = [500]

    result = WebhookSink(receiver.url, **FAST).send(make_alert())

    assert result.ok and result.attempts == 2
    assert receiver.hits == 2 and len(receiver.bodies) == 1


def test_webhook_retries_after_a_timeout(receiver):
    receiver.delays = [1.0]

    result = WebhookSink(receiver.url, timeout=0.3, retries=1, backoff_s=0.01).send(make_alert())

    # The first attempt timed out (the receiver waited 1 s), the retry went through.
    assert result.ok and result.attempts == 2
    assert receiver.hits == 2


def test_webhook_gives_up_after_its_retries_on_persistent_5xx(receiver):
    receiver.statuses = [503] * 10

    result = WebhookSink(receiver.url, retries=2, **FAST).send(make_alert())

    assert not result.ok and result.attempts == 3
    assert result.error == "HTTP 503 from webhook"
    assert receiver.hits == 3


def test_webhook_does_not_retry_a_client_error(receiver):
    receiver.statuses = [400]

    result = WebhookSink(receiver.url, **FAST).send(make_alert())

    assert not result.ok and result.attempts == 1 and receiver.hits == 1


def test_webhook_delivers_the_same_dedup_key_once(receiver):
    sink = WebhookSink(receiver.url, **FAST)

    first = sink.send(make_alert())
    second = sink.send(make_alert())
    other = sink.send(make_alert(dedup_key="stale_lock:2025-04:bob"))

    assert first.ok and not first.skipped
    assert second.ok and second.skipped and second.attempts == 0
    assert other.ok and not other.skipped
    assert [body["dedup_key"] for body in receiver.bodies] == [
        "stale_lock:2025-03:alice", "stale_lock:2025-04:bob"]


def test_webhook_skips_keys_the_seen_callable_knows(receiver):
    already = {"stale_lock:2025-03:alice"}
    sink = WebhookSink(receiver.url, seen=already.__contains__, **FAST)

    assert sink.send(make_alert()).skipped
    assert not sink.send(make_alert(dedup_key="new")).skipped
    assert [body["dedup_key"] for body in receiver.bodies] == ["new"]


def test_webhook_delivers_when_the_seen_callable_fails(receiver):
    def broken_seen(key: str) -> bool:
        raise RuntimeError("alerts table unavailable")

    result = WebhookSink(receiver.url, seen=broken_seen, **FAST).send(make_alert())

    assert result.ok and len(receiver.bodies) == 1


def test_webhook_retries_a_failed_delivery_on_the_next_send(receiver):
    receiver.statuses = [500, 500]
    sink = WebhookSink(receiver.url, retries=1, **FAST)

    assert not sink.send(make_alert()).ok
    assert sink.send(make_alert()).ok  # not remembered as delivered
    assert len(receiver.bodies) == 1


def test_a_dead_webhook_fails_after_its_retries_without_raising():
    dispatcher = AlertDispatcher([WebhookSink(closed_port_url(), retries=2, timeout=1, backoff_s=0.05)])

    results = dispatcher.dispatch(make_alert())

    assert len(results) == 1
    assert not results[0].ok and results[0].attempts == 3
    assert "ConnectionError" in results[0].error


def test_webhook_rejects_a_url_that_is_not_http():
    with pytest.raises(ValueError, match="http"):
        WebhookSink("ftp://example.org/hook")


def test_log_sink_logs_errors_at_error_level(caplog):
    logger = logging.getLogger("test.alerts")

    with caplog.at_level(logging.WARNING, logger="test.alerts"):
        LogSink(logger).send(make_alert(severity="error"))
        LogSink(logger).send(make_alert(severity="warning"))

    assert [record.levelno for record in caplog.records] == [logging.ERROR, logging.WARNING]
    assert "stale_lock:2025-03:alice" in caplog.records[0].getMessage()


def test_dispatcher_reports_a_failing_sink_and_still_reaches_the_others():
    written: list[Alert] = []

    def broken(alert: Alert) -> None:
        raise OSError("disk full")

    dispatcher = AlertDispatcher([CallbackSink(broken, name="alerts_table"), CallbackSink(written.append)])
    results = dispatcher.dispatch(make_alert())

    assert results == [
        DeliveryResult(sink="alerts_table", ok=False, error="OSError: disk full"),
        DeliveryResult(sink="callback", ok=True, attempts=1),
    ]
    assert written == [make_alert()]


def test_dispatch_all_keys_results_by_dedup_key():
    dispatcher = AlertDispatcher([CallbackSink(lambda alert: None)])

    results = dispatcher.dispatch_all([make_alert("a"), make_alert("b")])

    assert sorted(results) == ["a", "b"]


def test_alert_round_trips_through_its_dict():
    alert = make_alert()

    restored = Alert.from_dict(json.loads(json.dumps(alert.to_dict())))

    assert restored.to_dict() == alert.to_dict()


@pytest.mark.parametrize("kwargs, match", [
    ({"severity": "critical"}, "severity"),
    ({"dedup_key": ""}, "dedup_key"),
])
def test_alert_rejects_an_unknown_severity_or_empty_key(kwargs, match):
    base = {"rule": "r", "severity": "error", "month": None, "message": "m.", "dedup_key": "k"}

    with pytest.raises(ValueError, match=match):
        Alert(**{**base, **kwargs})


@pytest.mark.parametrize("environ, expected", [
    ({ALERT_WEBHOOK_VAR: "https://hooks.example.org/x"}, "https://hooks.example.org/x"),
    ({ALERT_WEBHOOK_VAR: "  "}, None),
    ({}, None),
])
def test_webhook_url_comes_from_the_environment(environ, expected):
    assert webhook_url_from_env(environ) == expected


def test_webhook_url_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv(ALERT_WEBHOOK_VAR, "http://127.0.0.1:9/hook")

    assert webhook_url_from_env() == "http://127.0.0.1:9/hook"
