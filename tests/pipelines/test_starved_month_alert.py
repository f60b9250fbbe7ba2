"""A starved month, end to end: runs of real months, the trend check, the sensor and the webhook."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import pandas as pd
import pytest
from click.testing import CliRunner

from assets.partitions import monthly_partitions
from pipelines.cli import main
from pipelines.jobs import EXECUTE_JOB
from pipelines.orchestration import prepare_dagster_home, run_job
from pipelines.roles import ACTOR_TAG
from pipelines.sensors import make_ratio_sensor
from resources.dagster_resources import AlertsResource, ControlStoreResource, StorageResource

MONTHS = monthly_partitions.get_partition_keys()[-4:]


@pytest.fixture
def webhook():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):  # keep the test output quiet
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/alerts", received
    server.shutdown()
    server.server_close()


def cli(*args: str) -> None:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output + result.stderr


def test_a_starved_month_raises_an_alert_that_reaches_the_webhook(home, webhook, monkeypatch):
    url, received = webhook
    monkeypatch.setenv("BATCH_ADMIN_ALERT_WEBHOOK", url)
    starved = MONTHS[-1]
    for index, month in enumerate(MONTHS):
        cli("demo-data", month, "--requests", "300", "--resources", "30", "--seed", str(index))
        cli("params", month, "--actor", "alice", "--set", "time_limit_s=1")
    # Starve the last month: a quarter of the capacity (and no must_allocate to keep it feasible).
    landing = home / "landing" / starved
    for table, column in (("resources", "capacity_units"), ("availability", "available_units")):
        frame = pd.read_parquet(landing / f"{table}.parquet")
        frame[column] = frame[column] // 4
        frame.to_parquet(landing / f"{table}.parquet")
    requests = pd.read_parquet(landing / "requests.parquet")
    requests["must_allocate"] = False
    requests.to_parquet(landing / "requests.parquet")

    outcomes = {m: run_job(EXECUTE_JOB, m, {ACTOR_TAG: "alice"}) for m in MONTHS}
    assert all(o.success for o in outcomes.values()), {m: o.error for m, o in outcomes.items()}

    prepare_dagster_home()
    with dg.DagsterInstance.get() as instance:
        checks = {e.check_name: e.passed for e in
                  (r.event_log_entry.dagster_event.event_specific_data
                   for r in instance.get_records_for_run(outcomes[starved].run_id).records
                   if r.event_log_entry.dagster_event
                   and r.event_log_entry.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION")}
        assert checks["unallocated_ratio_near_trailing_months"] is False
        assert checks["no_resource_over_capacity"] is True

        sensor = make_ratio_sensor()
        resources = {"control": ControlStoreResource(), "alerts": AlertsResource(), "storage": StorageResource()}
        context = dg.build_sensor_context(instance=instance, resources=resources)
        sensor.evaluate_tick(context)
        cursor = json.loads(context.cursor)
        assert cursor[starved] == 1

    starved_alerts = [a for a in received if a["month"] == starved]
    assert starved_alerts, received
    assert {a["rule"] for a in starved_alerts} & {"unallocated_ratio_anomaly", "utilization_anomaly"}
    assert all(a["month"] == starved for a in received)

    # A second tick raises nothing new: the cursor and the de-duplication hold.
    before = len(received)
    with dg.DagsterInstance.get() as instance:
        sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources,
                                                     cursor=json.dumps(cursor)))
    assert len(received) == before
