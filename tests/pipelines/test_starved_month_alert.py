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
from batch.alert_rules import MIN_TRAILING_MONTHS
from batch.identity import TICKET_TAG, make_ticket
from batch_cli.instance import prepare
from batch_cli.main import main
from batch_cli.runs import run_job
from pipelines.definitions import defs
from pipelines.jobs import EXECUTE_JOB
from pipelines.sensors import FAILED_CHECKS_SENSOR, make_failed_checks_sensor
from tests.signing import demo_key as key

# The starved month and the fewest trailing months its trend checks and rules judge (one run each, ~25 s).
MONTHS = monthly_partitions.get_partition_keys()[-(MIN_TRAILING_MONTHS + 1):]


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


@pytest.mark.slow
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

    backfill = make_ticket(key("alice"), "alice", EXECUTE_JOB, MONTHS, 30).encode()
    outcomes = {m: run_job(EXECUTE_JOB, m, {TICKET_TAG: backfill}) for m in MONTHS}
    assert all(o.success for o in outcomes.values()), {m: o.error for m, o in outcomes.items()}

    prepare()
    instance = dg.DagsterInstance.get()
    checks = {e.check_name: e.passed for e in
              (r.event_log_entry.dagster_event.event_specific_data
               for r in instance.get_records_for_run(outcomes[starved].run_id).records
               if r.event_log_entry.dagster_event
               and r.event_log_entry.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION")}
    assert checks["unallocated_ratio_near_trailing_months"] is False
    assert checks["no_resource_over_capacity"] is True

    run = instance.get_run_by_id(outcomes[starved].run_id)
    success = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS).records
    sensor = make_failed_checks_sensor()

    def evaluate() -> None:
        with dg.build_run_status_sensor_context(
                sensor_name=FAILED_CHECKS_SENSOR, dagster_instance=instance, dagster_run=run,
                dagster_event=success[0].event_log_entry.dagster_event, resources=defs.resources) as context:
            sensor(context)

    evaluate()

    starved_alerts = [a for a in received if a["month"] == starved]
    assert starved_alerts, received
    # One alert per condition: each failed trend check once, as a failed check (no second alert
    # for the same anomaly from another rule).
    names = [a["details"]["check_name"] for a in starved_alerts]
    assert {a["rule"] for a in starved_alerts} == {"failed_check"}
    assert "unallocated_ratio_near_trailing_months" in names and len(names) == len(set(names))
    assert not {"unallocated_ratio_anomaly", "utilization_anomaly"} & {a["rule"] for a in received}
    assert all(a["month"] == starved for a in received)

    # Evaluated again (a daemon restart): de-duplication holds, nothing is sent twice.
    before = len(received)
    evaluate()
    assert len(received) == before
    instance.dispose()
