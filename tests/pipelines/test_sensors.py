"""Sensors: alerts land in the alerts table, cursors advance, actuals request one run per arrival."""

import json
import os
import warnings
from datetime import timedelta

import dagster as dg
import pandas as pd
import pytest

from assets.actuals import planned_vs_actual
from batch import alert_rules
from batch.roles import MONTH_TAG
from pipelines import sensors
from resources import control_store
from resources.control_store import ControlStore
from resources.dagster_resources import AlertsResource, ControlStoreResource, StorageResource
from resources.storage import ExportStore
from tests.batch.input_builders import write_rows
from tests.signing import open_store, roles_file, signed

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

MONTH = "2025-03"
RESOURCES = [
    {"resource_id": "R1", "name": "North A", "service": "consulting", "region": "north", "capacity_units": "100"},
    {"resource_id": "R2", "name": "North B", "service": "consulting", "region": "north", "capacity_units": "50"},
    {"resource_id": "R3", "name": "South", "service": "repair", "region": "south", "capacity_units": "80"},
]
REQUESTS = [
    {"request_id": q, "customer_id": "C1", "service": s, "region": r, "units": u, "priority": "1",
     "must_allocate": "false"}
    for q, s, r, u in [("Q1", "consulting", "north", "60"), ("Q2", "consulting", "north", "30"),
                       ("Q3", "repair", "south", "40")]
]
ACTUALS = [{"resource_id": "R1", "request_id": "Q1", "actual_units": "55"},
           {"resource_id": "R3", "request_id": "Q3", "actual_units": "50"}]


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("BATCH_ADMIN_HOME", str(home))
    for name in ("BATCH_ADMIN_CONTROL_URL", "BATCH_ADMIN_POSTGRES_URL", "BATCH_ADMIN_ALERT_WEBHOOK"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def store(home) -> ControlStore:
    store = open_store(f"sqlite:///{home}/control.db")
    yield store
    store.dispose()


@pytest.fixture
def resources(home, store) -> dict:
    return {"control": ControlStoreResource(url=store.url, roles_file=str(roles_file())), "storage": StorageResource(home=str(home)),
            "alerts": AlertsResource()}


@pytest.fixture(scope="module")
def instance():
    """One instance for the module (it is slow to make)."""
    with dg.instance_for_test() as instance:
        yield instance


def allocation_rows(month: str = MONTH) -> pd.DataFrame:
    """Q1 on R1, Q3 on R3, Q2 unallocated for lack of capacity."""
    return pd.DataFrame({
        "month": month, "request_id": ["Q1", "Q2", "Q3"], "customer_id": "C1",
        "service": ["consulting", "consulting", "repair"], "region": ["north", "north", "south"],
        "priority": 1, "resource_id": ["R1", None, "R3"], "units": [60, 30, 40],
        "requested_units": [60, 30, 40], "cost": [0, 0, 10], "status": ["allocated", "unallocated", "allocated"], "reason": [None, "capacity_exhausted", None],
    })


def write_version(home, month: str = MONTH) -> int:
    exports = ExportStore(home)
    version = exports.next_version(month)
    exports.write_version(month, version, allocation_rows(month), {
        "run_id": f"run-{version}", "actor": "alice", "note": "test", "parameters": {},
        "input_fingerprint": "x", "status": "proposed", "solver": {}, "metrics": {}})
    return version


def land(home, month: str = MONTH, actuals: bool = True) -> None:
    tables = {"resources": RESOURCES, "requests": REQUESTS}
    if actuals:
        tables["actuals"] = ACTUALS
    write_rows(home, tables, month=month)


def rules(store: ControlStore) -> list[str]:
    return [row["rule"] for row in store.alerts()]


# ------------------------------------------------------------------ run failures

@dg.op
def explode():
    raise dg.Failure(description="The solver exploded.")


@dg.job(tags={MONTH_TAG: MONTH})
def doomed_job():
    explode()


def fail_once(instance, resources) -> str:
    """Fail a run in the instance and evaluate the run failure sensor on it."""
    result = doomed_job.execute_in_process(instance=instance, raise_on_error=False)
    # Entered like the daemon does: the control store resource opens (and disposes) its engine.
    with dg.build_run_status_sensor_context(
            sensor_name=sensors.RUN_FAILURE_SENSOR, dagster_instance=instance, dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(), resources=resources) as context:
        sensors.make_run_failure_sensor()(context.for_run_failure())
    return result.run_id


def test_a_failed_run_raises_one_run_failure_alert_with_its_month_and_error(instance, resources, store):
    run_id = fail_once(instance, resources)

    [alert] = store.alerts()
    assert alert["rule"] == alert_rules.RULE_RUN_FAILURE
    assert alert["month"] == MONTH
    assert alert["details"]["run_id"] == run_id
    assert "The solver exploded" in alert["message"]
    assert alert["dedup_key"] == f"run_failure:{run_id}"


def test_more_failures_than_allowed_in_the_window_raise_too_many_errors_once(instance, resources, store):
    for _ in range(5):
        fail_once(instance, resources)

    assert rules(store).count(alert_rules.RULE_RUN_FAILURE) == 5
    assert rules(store).count(alert_rules.RULE_TOO_MANY_ERRORS) == 1
    burst = next(a for a in store.alerts() if a["rule"] == alert_rules.RULE_TOO_MANY_ERRORS)
    assert burst["details"]["failures"] == 4


# ------------------------------------------------------------------ failed checks

@dg.asset(partitions_def=dg.StaticPartitionsDefinition([MONTH]),
          check_specs=[dg.AssetCheckSpec("ratio_near_trailing_months", asset="checked_figures")])
def checked_figures():
    yield dg.Output(1)
    yield dg.AssetCheckResult(check_name="ratio_near_trailing_months", passed=False,
                              severity=dg.AssetCheckSeverity.WARN, description="Far from the trailing months")


@dg.asset(check_specs=[dg.AssetCheckSpec("always_fine", asset="fine_figures")])
def fine_figures():
    yield dg.Output(1)
    yield dg.AssetCheckResult(check_name="always_fine", passed=True)


def evaluate(sensor, instance, resources, cursor=None):
    definitions = dg.Definitions(assets=[planned_vs_actual], sensors=[sensor], resources=resources)
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources,
                                 definitions=definitions) as context:
        return sensor.evaluate_tick(context)


def on_success(instance, resources, result) -> None:
    """Evaluate the failed-checks run status sensor on a successful run, as the daemon would."""
    with dg.build_run_status_sensor_context(
            sensor_name=sensors.FAILED_CHECKS_SENSOR, dagster_instance=instance, dagster_run=result.dagster_run,
            dagster_event=result.get_run_success_event(), resources=resources) as context:
        sensors.make_failed_checks_sensor()(context)


def test_a_warn_check_failure_in_a_green_run_raises_one_warning(instance, resources, store):
    result = dg.materialize([checked_figures], instance=instance, partition_key=MONTH)
    assert result.success

    on_success(instance, resources, result)
    on_success(instance, resources, result)  # evaluated again: de-duplicated

    [alert] = store.alerts()
    assert alert["rule"] == alert_rules.RULE_FAILED_CHECK
    assert alert["severity"] == "warning"
    assert alert["month"] == MONTH
    assert alert["details"]["run_id"] == result.run_id

    fine = dg.materialize([fine_figures], instance=instance)
    on_success(instance, resources, fine)
    again = dg.materialize([checked_figures], instance=instance, partition_key=MONTH)
    on_success(instance, resources, again)
    assert rules(store) == [alert_rules.RULE_FAILED_CHECK] * 2


def test_a_failed_check_of_a_versioned_run_names_the_version(instance, resources, store):
    result = dg.materialize([checked_figures], instance=instance, partition_key=MONTH)
    store.record_version(MONTH, 1, "alice", None, result.run_id, "path", {}, {}, None)

    on_success(instance, resources, result)

    [alert] = store.alerts()
    assert alert["dedup_key"] == f"failed_check:{MONTH}:ratio_near_trailing_months:v1"


def test_the_failed_checks_sensor_is_a_run_status_sensor_on_success():
    sensor = sensors.make_failed_checks_sensor()
    assert isinstance(sensor, dg.RunStatusSensorDefinition)


# ------------------------------------------------------------------ locks

def test_a_lock_past_its_ttl_raises_a_stale_lock_alert_once(instance, resources, store):
    store.record_version(MONTH, 1, "alice", None, "run-1", "path", {}, {}, None)
    store.take_lock(signed("alice", "lock", MONTH, {"admins": ["carol"], "ttl_hours": 1}))
    with store.write() as conn:
        conn.execute(control_store.locks.update().where(control_store.locks.c.month == MONTH).values(
            expires_at=control_store.utcnow() - timedelta(hours=2)))
    sensor = sensors.make_lock_sensor()

    evaluate(sensor, instance, resources)
    evaluate(sensor, instance, resources)

    [alert] = store.alerts()
    assert alert["rule"] == alert_rules.RULE_STALE_LOCK
    assert alert["details"]["holder"] == "alice"


def test_a_lock_on_a_month_never_planned_is_unexpected(instance, resources, store):
    store.take_lock(signed("alice", "lock", "2025-04", {"admins": ["carol"], "ttl_hours": 8}))

    evaluate(sensors.make_lock_sensor(), instance, resources)

    assert rules(store) == [alert_rules.RULE_UNEXPECTED_LOCK]


def test_a_fresh_lock_on_a_proposed_month_raises_nothing(instance, resources, store):
    store.record_version(MONTH, 1, "alice", None, "run-1", "path", {}, {}, None)
    store.take_lock(signed("alice", "lock", MONTH, {"admins": ["carol"], "ttl_hours": 8}))

    evaluate(sensors.make_lock_sensor(), instance, resources)

    assert store.alerts() == []


# ------------------------------------------------------------------ actuals

def test_actuals_request_one_run_for_their_month_once_it_has_a_version(instance, resources, home):
    land(home)
    sensor = sensors.make_actuals_sensor()

    before_versions = evaluate(sensor, instance, resources)
    assert before_versions.run_requests == []
    assert before_versions.cursor is None

    write_version(home)
    first = evaluate(sensor, instance, resources)
    [request] = first.run_requests
    assert request.partition_key == MONTH
    assert request.tags[MONTH_TAG] == MONTH
    assert MONTH in json.loads(first.cursor)

    again = evaluate(sensor, instance, resources, cursor=first.cursor)
    assert again.run_requests == []


def test_changed_actuals_request_a_new_run(instance, resources, home):
    land(home)
    write_version(home)
    sensor = sensors.make_actuals_sensor()
    first = evaluate(sensor, instance, resources)

    actuals = home / "landing" / MONTH / "actuals.csv"
    actuals.write_text(actuals.read_text() + "R2,Q2,5\n")
    os.utime(actuals, ns=(1, 1))
    second = evaluate(sensor, instance, resources, cursor=first.cursor)

    [request] = second.run_requests
    assert request.run_key != first.run_requests[0].run_key


def test_the_requested_run_materializes_planned_vs_actual_with_utilization(instance, resources, home):
    land(home)
    write_version(home)

    result = dg.materialize([planned_vs_actual], partition_key=MONTH, instance=instance, resources=resources)

    table = result.output_for_node("planned_vs_actual")
    assert table.set_index("resource_id")["actual_units"].to_dict() == {"R1": 55, "R2": 0, "R3": 50}
    metadata = result.asset_materializations_for_node("planned_vs_actual")[0].metadata
    assert metadata["actual_units"].value == 105
    assert metadata["planned_units"].value == 100
    assert metadata["actual_utilization"].value == pytest.approx(105 / 230)
    assert "| resource_id" in metadata["planned_vs_actual"].value


def test_every_sensor_starts_running():
    assert {s.default_status for s in sensors.all_sensors()} == {dg.DefaultSensorStatus.RUNNING}
    assert len({s.name for s in sensors.all_sensors()}) == 5

