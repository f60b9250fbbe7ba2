"""The alerts table as an outbox: undelivered alerts are retried until the webhook takes them."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import dagster as dg
import pytest

from pipelines import sensors
from resources.alert_delivery import AlertRaiser
from resources.alerts import AlertDispatcher, LogSink, WebhookSink
from resources.control_store import ControlStore, utcnow
from resources.control_store import alerts as alerts_table
from resources.dagster_resources import AlertsResource, ControlStoreResource
from tests.resources.test_alerts import make_alert, receiver  # noqa: F401 - the receiver fixture

LATER = timedelta(hours=2)  # past any backoff


@pytest.fixture
def store(tmp_path):
    store = ControlStore(f"sqlite:///{tmp_path / 'control.db'}")
    yield store
    store.dispose()


def raiser(store: ControlStore, url: str) -> AlertRaiser:
    """What a process builds for each alert: a fresh dispatcher (so nothing is remembered in memory)."""
    sinks = [LogSink(logging.getLogger("test.alerts")), WebhookSink(url, retries=0, timeout=2, backoff_s=0.01)]
    return AlertRaiser(store, AlertDispatcher(sinks))


def test_an_alert_raised_while_the_webhook_is_down_is_delivered_once_it_is_up(store, receiver):  # noqa: F811
    receiver.statuses = [503]
    assert raiser(store, receiver.url).raise_alert(make_alert()) is not None

    [pending] = store.alerts(pending=True)
    assert pending["attempts"] == 1 and pending["next_attempt_at"] > utcnow()
    assert store.due_alerts() == []  # backing off

    tried, delivered = raiser(store, receiver.url).retry_pending(now=utcnow() + LATER)  # as after a restart
    assert (tried, delivered) == (1, 1)
    assert store.alerts(pending=True) == []
    assert len(receiver.bodies) == 1 and receiver.hits == 2
    assert raiser(store, receiver.url).retry_pending(now=utcnow() + LATER) == (0, 0)


def test_only_a_delivered_alert_silences_the_same_condition_raised_again(store, receiver):  # noqa: F811
    receiver.statuses = [500]
    first = raiser(store, receiver.url).raise_alert(make_alert())
    # Raised again while still pending: sent again (and taken now), not swallowed by de-duplication.
    assert raiser(store, receiver.url).raise_alert(make_alert()) == first
    assert len(receiver.bodies) == 1 and store.alerts(pending=True) == []
    # Delivered: the same condition raised once more is de-duplicated.
    assert raiser(store, receiver.url).raise_alert(make_alert()) is None
    assert receiver.hits == 2 and len(store.alerts()) == 1


def test_backoff_doubles_between_attempts(store, receiver):  # noqa: F811
    receiver.statuses = [500, 500, 500]
    raiser(store, receiver.url).raise_alert(make_alert())
    waits = []
    for _ in range(2):
        [before] = store.alerts(pending=True)
        raiser(store, receiver.url).retry_pending(now=before["next_attempt_at"])
        [after] = store.alerts(pending=True)
        waits.append((after["next_attempt_at"] - utcnow()).total_seconds())
    assert after["attempts"] == 3
    assert waits[1] > 1.5 * waits[0]


def test_the_outbox_sensor_delivers_pending_alerts(store, receiver):  # noqa: F811
    receiver.statuses = [502]
    raiser(store, receiver.url).raise_alert(make_alert())
    # The next attempt is due only after the backoff: make it due now, as time passing would.
    with store.write() as conn:
        conn.execute(alerts_table.update().values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    resources = {"control": ControlStoreResource(url=store.url), "alerts": AlertsResource(webhook_url=receiver.url)}
    with dg.instance_for_test() as instance, dg.build_sensor_context(instance=instance, resources=resources) as context:
        result = sensors.make_alert_outbox_sensor().evaluate_tick(context)
    assert "1 pending alert(s) sent again; 1 delivered" in result.skip_message
    assert store.alerts(pending=True) == [] and len(receiver.bodies) == 1


def test_batch_admin_alerts_pending_lists_what_is_still_waiting(home, receiver):  # noqa: F811
    from click.testing import CliRunner

    from batch_cli.main import main
    from resources.settings import Settings

    store = ControlStore(Settings.from_env().control_url)
    receiver.statuses = [500]
    raiser(store, receiver.url).raise_alert(make_alert("waiting"))
    raiser(store, receiver.url).raise_alert(make_alert("taken"))
    result = CliRunner().invoke(main, ["alerts", "--pending", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert [a["dedup_key"] for a in json.loads(result.stdout)] == ["waiting"]
    human = CliRunner().invoke(main, ["alerts"], catch_exceptions=False).stdout
    assert "pending (1 attempts" in human
    store.dispose()
