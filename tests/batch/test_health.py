"""month_health: latest version figures, utilization by service and region, planned vs actual, trend."""

import json
import shutil

import pytest

from batch.health import keep_figures, month_health, trend
from batch.names import CACHE_DIR
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


def store_figures(home, month: str = MONTH, version: int = 1, **changed) -> None:
    """The figures of a version kept as the run's export step keeps them (batch.health.keep_figures); `changed`
    replaces some headline figures in the kept file, so that a test sees whether the kept ones were read."""
    keep_figures(ExportStore(home), month, (version, False))
    if changed:
        path = next((home / CACHE_DIR / "figures" / month).glob("*.json"))
        kept = json.loads(path.read_text(encoding="utf-8"))
        kept["figures"].update(changed)
        path.write_text(json.dumps(kept), encoding="utf-8")


def test_a_versions_kept_figures_are_read_while_the_landed_files_are_the_ones_they_came_from(home, store):
    land(home, actuals=False)
    write_version(home)
    record(store, MONTH, 1)
    computed = month_health(store, ExportStore(home), MONTH)
    shutil.rmtree(home / CACHE_DIR)  # what month_health kept: the run's export step keeps them too
    store_figures(home, success_rate=0.125)

    stored = month_health(store, ExportStore(home), MONTH)

    assert stored["metrics"]["success_rate"] == 0.125  # read, not computed
    assert {**stored["metrics"], "success_rate": computed["metrics"]["success_rate"]} == computed["metrics"]
    assert stored["utilization_by_service_region"] == computed["utilization_by_service_region"]
    land(home, actuals=True)  # actuals land after the version: other landed files, other figures

    later = month_health(store, ExportStore(home), MONTH)

    assert later["metrics"]["success_rate"] == computed["metrics"]["success_rate"]
    assert later["planned_vs_actual"]["actuals_landed"] is True
