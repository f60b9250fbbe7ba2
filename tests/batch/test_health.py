"""month_health: latest version figures, utilization by service and region, planned vs actual, trend."""

import json

import pytest

from batch.health import month_health, trend
from resources.control_store import ControlStore
from resources.storage import ExportStore
from tests.pipelines.test_sensors import MONTH, land, write_version


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("BATCH_ADMIN_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def store(home):
    store = ControlStore(f"sqlite:///{home}/control.db")
    yield store
    store.dispose()


def record(store, month, version, **metrics):
    store.record_version(month, version, "alice", "note", f"run-{month}-{version}", "path", {}, metrics, None)


def test_a_month_without_versions_has_no_metrics_but_its_phase_and_trend(home, store):
    health = month_health(store, ExportStore(home), MONTH)

    assert health["phase"] == "open"
    assert health["metrics"] is None
    assert health["trend"] == []


def test_the_latest_version_gives_success_rate_unprocessed_reasons_and_utilization(home, store):
    land(home, actuals=False)
    write_version(home)
    record(store, MONTH, 1, objective=900.0, gap=0.0)

    health = month_health(store, ExportStore(home), MONTH)

    metrics = health["metrics"]
    assert health["version"] == 1
    assert metrics["success_rate"] == pytest.approx(2 / 3)
    assert metrics["unprocessed_by_reason"] == {"capacity_exhausted": 1}
    assert metrics["utilization"] == pytest.approx(100 / 230)
    assert metrics["objective"] == 900.0
    by_group = {(g["service"], g["region"]): g for g in health["utilization_by_service_region"]}
    assert by_group[("consulting", "north")]["planned_units"] == 60
    assert by_group[("repair", "south")]["utilization"] == pytest.approx(0.5)
    assert health["planned_vs_actual"] is None
    json.dumps(health)


def test_landed_actuals_add_planned_vs_actual(home, store):
    land(home)
    write_version(home)
    record(store, MONTH, 1)

    pva = month_health(store, ExportStore(home), MONTH)["planned_vs_actual"]

    assert pva["actuals_landed"] is True
    assert (pva["planned_units"], pva["actual_units"], pva["delta_units"]) == (100, 105, 5)
    assert {row["resource_id"]: row["delta"] for row in pva["by_resource"]} == {"R1": -5, "R2": 0, "R3": 10}


def test_the_trend_covers_the_last_six_months_oldest_first_with_each_months_latest_version(store):
    for month in ("2024-08", "2024-09", "2024-10", "2025-01", MONTH):
        record(store, month, 1, success_rate=0.9, unallocated_ratio=0.1, utilization=0.8, objective=1.0, gap=0.0)
    record(store, MONTH, 2, success_rate=0.95, unallocated_ratio=0.05, utilization=0.85, objective=2.0, gap=0.01)

    rows = trend(store, MONTH)

    assert [(r["month"], r["version"]) for r in rows] == [("2024-10", 1), ("2025-01", 1), (MONTH, 2)]
    assert rows[-1] == {"month": MONTH, "version": 2, "success_rate": 0.95, "unallocated_ratio": 0.05,
                        "utilization": 0.85, "objective": 2.0, "gap": 0.01}


def test_bad_landing_is_reported_as_a_problem_not_raised(home, store):
    write_version(home)
    record(store, MONTH, 1, success_rate=0.5)

    health = month_health(store, ExportStore(home), MONTH)

    assert health["metrics"] == {"success_rate": 0.5}
    assert "No inputs have landed" in health["problems"][0]
