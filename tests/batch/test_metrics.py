"""Monitoring figures on tiny hand-made frames with exact expected numbers."""

from __future__ import annotations

import json
import math
import time

import pandas as pd
import pytest

from batch.formats import format_figure, headline
from batch.metrics import (
    ResourceUsage,
    counts,
    counts_by_reason,
    planned_vs_actual,
    relative_gap,
    trend_table,
    utilization_table,
    version_metrics,
)

ROW_COLUMNS = ["month", "version", "request_id", "customer_id", "service", "region", "priority",
               "resource_id", "units", "cost", "status", "reason"]


def make_resources() -> pd.DataFrame:
    """Three resources: two compute/eu (100 + 50), one storage/us (200)."""
    return pd.DataFrame({
        "resource_id": ["R1", "R2", "R3"],
        "name": ["alpha", "beta", "gamma"],
        "service": ["compute", "compute", "storage"],
        "region": ["eu", "eu", "us"],
        "capacity": [100, 50, 200],
    })


def make_rows() -> pd.DataFrame:
    """Six requests: 3 allocated, 1 pinned, 1 unallocated, 1 excluded."""
    records = [
        ("Q1", "C1", "compute", "eu", 1, "R1", 40, 0, "allocated", None),
        ("Q2", "C2", "compute", "eu", 1, "R1", 30, 10, "allocated", None),
        ("Q3", "C1", "compute", "eu", 2, "R2", 50, 0, "pinned", "pinned_by_admin"),
        ("Q4", "C3", "storage", "us", 2, "R3", 20, 10, "allocated", None),
        ("Q5", "C3", "storage", "us", 3, None, 500, 0, "unallocated", "capacity_exhausted"),
        ("Q6", "C2", "compute", "eu", 3, None, 10, 0, "excluded", "excluded"),
    ]
    return pd.DataFrame([("2025-03", 2, *record) for record in records], columns=ROW_COLUMNS)


def test_version_metrics_counts_pinned_as_allocated_and_divides_by_all_requests():
    metrics = version_metrics(make_rows(), make_resources())

    assert metrics["requests"] == 6
    assert metrics["allocated"] == 4
    assert metrics["pinned"] == 1
    assert metrics["unallocated"] == 1
    assert metrics["excluded"] == 1
    assert metrics["success_rate"] == 4 / 6
    assert metrics["unallocated_ratio"] == 1 / 6
    assert metrics["unprocessed_by_reason"] == {"capacity_exhausted": 1, "excluded": 1}


def make_requests() -> pd.DataFrame:
    """The requests behind make_rows(): their units whether allocated or not."""
    return pd.DataFrame({"request_id": [f"Q{i}" for i in range(1, 7)], "units": [40, 30, 50, 20, 500, 10]})


def test_version_metrics_utilization_is_placed_units_over_total_capacity():
    metrics = version_metrics(make_rows(), make_resources(), make_requests())

    assert metrics["requested_units"] == 650
    assert metrics["allocated_units"] == 140
    assert metrics["capacity_units"] == 350
    assert metrics["utilization"] == 140 / 350


def test_version_metrics_breaks_counts_down_by_priority():
    by_priority = version_metrics(make_rows(), make_resources())["by_priority"]

    assert by_priority == {
        "1": {"requests": 2, "allocated": 2, "unallocated": 0, "excluded": 0, "success_rate": 1.0},
        "2": {"requests": 2, "allocated": 2, "unallocated": 0, "excluded": 0, "success_rate": 1.0},
        "3": {"requests": 2, "allocated": 0, "unallocated": 1, "excluded": 1, "success_rate": 0.0},
    }


def test_version_metrics_are_plain_json_and_carry_month_and_version():
    metrics = version_metrics(make_rows(), make_resources())

    assert json.loads(json.dumps(metrics)) == metrics
    assert (metrics["month"], metrics["version"]) == ("2025-03", 2)
    assert type(metrics["requests"]) is int and type(metrics["success_rate"]) is float


def test_version_metrics_of_an_empty_version_have_no_rates():
    empty = make_rows().iloc[0:0]
    metrics = version_metrics(empty, make_resources().iloc[0:0])

    assert metrics["requests"] == 0
    assert metrics["success_rate"] is None
    assert metrics["utilization"] is None
    assert metrics["unprocessed_by_reason"] == {}
    assert metrics["by_priority"] == {}


def test_version_metrics_name_missing_reasons_unknown():
    rows = make_rows()
    rows.loc[rows["request_id"] == "Q5", "reason"] = None
    rows.loc[rows["request_id"] == "Q6", "reason"] = None

    assert version_metrics(rows, make_resources())["unprocessed_by_reason"] == {
        "excluded": 1, "unknown": 1}


def test_version_metrics_reject_an_unknown_status():
    rows = make_rows()
    rows.loc[0, "status"] = "maybe"

    with pytest.raises(ValueError, match="maybe"):
        version_metrics(rows, make_resources())


def test_version_metrics_accept_the_landing_name_capacity_units():
    resources = make_resources().rename(columns={"capacity": "capacity_units"})

    assert version_metrics(make_rows(), resources)["capacity_units"] == 350


def test_utilization_per_resource_lists_idle_resources_too():
    table = utilization_table(make_rows(), make_resources(), by="resource")

    assert table["resource_id"].tolist() == ["R1", "R2", "R3"]
    assert table["capacity"].tolist() == [100, 50, 200]
    assert table["planned_units"].tolist() == [70, 50, 20]
    assert table["utilization"].tolist() == [0.7, 1.0, 0.1]
    assert table["over_capacity"].tolist() == [False, False, False]


def test_utilization_per_service_region_sums_resources():
    table = utilization_table(make_rows(), make_resources(), by="service_region")

    assert table[["service", "region", "resources", "capacity", "planned_units"]].to_dict("records") == [
        {"service": "compute", "region": "eu", "resources": 2, "capacity": 150, "planned_units": 120},
        {"service": "storage", "region": "us", "resources": 1, "capacity": 200, "planned_units": 20},
    ]
    assert table["utilization"].tolist() == [0.8, 0.1]


@pytest.mark.parametrize("by, keys, utilization", [
    ("service", ["compute", "storage"], [0.8, 0.1]),
    ("region", ["eu", "us"], [0.8, 0.1]),
])
def test_utilization_per_service_or_region(by, keys, utilization):
    table = utilization_table(make_rows(), make_resources(), by=by)

    assert table[by].tolist() == keys
    assert table["utilization"].tolist() == utilization


def test_utilization_flags_over_capacity_and_zero_capacity_has_no_ratio():
    resources = make_resources()
    resources.loc[resources["resource_id"] == "R2", "capacity"] = 0

    table = utilization_table(make_rows(), resources, by="resource").set_index("resource_id")

    assert math.isnan(table.loc["R2", "utilization"])
    assert bool(table.loc["R2", "over_capacity"]) is True


def test_utilization_keeps_allocations_on_a_resource_missing_from_the_resources_table():
    rows = make_rows()
    rows.loc[rows["request_id"] == "Q4", "resource_id"] = "R9"

    table = utilization_table(rows, make_resources(), by="resource").set_index("resource_id")

    assert table.loc["R9", "planned_units"] == 20
    assert table.loc["R9", "capacity"] == 0
    assert bool(table.loc["R9", "over_capacity"]) is True


def test_utilization_rejects_an_unknown_grouping():
    with pytest.raises(ValueError, match="customer"):
        utilization_table(make_rows(), make_resources(), by="customer")


def test_planned_vs_actual_compares_per_resource():
    actuals = pd.DataFrame({
        "resource_id": ["R1", "R1", "R3"],
        "request_id": ["Q1", "Q2", "Q4"],
        "actual_units": [40, 45, 10],
    })

    table = planned_vs_actual(make_rows(), make_resources(), actuals)

    compared = table[["resource_id", "capacity", "planned_units", "actual_units", "delta"]]
    assert compared.to_dict("records") == [
        {"resource_id": "R1", "capacity": 100, "planned_units": 70, "actual_units": 85, "delta": 15},
        {"resource_id": "R2", "capacity": 50, "planned_units": 50, "actual_units": 0, "delta": -50},
        {"resource_id": "R3", "capacity": 200, "planned_units": 20, "actual_units": 10, "delta": -10},
    ]
    assert table["planned_utilization"].tolist() == [0.7, 1.0, 0.1]
    assert table["actual_utilization"].tolist() == [0.85, 0.0, 0.05]


def test_planned_vs_actual_shows_actuals_on_an_unplanned_unknown_resource():
    actuals = pd.DataFrame({"resource_id": ["R7"], "request_id": ["Q9"], "actual_units": [5]})

    table = planned_vs_actual(make_rows(), make_resources(), actuals).set_index("resource_id")

    assert table.loc["R7", "actual_units"] == 5
    assert table.loc["R7", "planned_units"] == 0
    assert table.loc["R7", "delta"] == 5


def test_planned_vs_actual_without_actuals_leaves_actual_columns_empty():
    table = planned_vs_actual(make_rows(), make_resources(), None)

    assert table["actual_units"].isna().all()
    assert table["delta"].isna().all()
    assert table["planned_units"].tolist() == [70, 50, 20]


def test_trend_table_sorts_by_month_and_drops_nested_values():
    history = [
        {"month": "2025-03", "success_rate": 0.9, "utilization": 0.5, "by_priority": {"1": {}}},
        {"month": "2025-01", "success_rate": 0.8, "utilization": 0.4, "objective": 10.0},
        {"month": "2025-02", "success_rate": 0.7, "utilization": 0.6, "gap": 0.0},
    ]

    table = trend_table(history)

    assert table["month"].tolist() == ["2025-01", "2025-02", "2025-03"]
    assert table["success_rate"].tolist() == [0.8, 0.7, 0.9]
    assert "by_priority" not in table.columns
    assert table.columns[0] == "month"


def test_trend_table_orders_versions_within_a_month():
    history = [{"month": "2025-02", "version": 2}, {"month": "2025-02", "version": 1},
               {"month": "2025-01", "version": 3}]

    table = trend_table(history)

    assert table[["month", "version"]].values.tolist() == [["2025-01", 3], ["2025-02", 1], ["2025-02", 2]]


def test_trend_table_of_no_history_is_empty_with_a_month_column():
    table = trend_table([])

    assert table.empty and list(table.columns) == ["month"]


def test_trend_table_requires_a_month_per_entry():
    with pytest.raises(ValueError, match="month"):
        trend_table([{"success_rate": 1.0}])


def test_resource_usage_measures_wall_cpu_and_memory_of_a_phase():
    usage = ResourceUsage()

    with usage.measure("solve") as solve:
        deadline = time.process_time() + 0.05
        while time.process_time() < deadline:
            pass
        time.sleep(0.02)

    assert solve["phase"] == "solve"
    assert solve["wall_seconds"] >= 0.07
    assert 0.05 <= solve["cpu_seconds"] < solve["wall_seconds"] + 0.5
    assert solve["peak_rss_mb"] > 1
    assert usage.as_dict() == {"solve": solve}


def test_resource_usage_records_a_phase_that_raises():
    usage = ResourceUsage()

    with pytest.raises(RuntimeError), usage.measure("load"):
        raise RuntimeError("boom")

    assert usage.as_dict()["load"]["wall_seconds"] >= 0


def test_requested_units_come_from_the_requests_because_rows_carry_zero_units_when_not_allocated():
    rows = make_rows()
    rows.loc[rows["status"].isin(["unallocated", "excluded"]), "units"] = 0  # as the pipeline writes them

    metrics = version_metrics(rows, make_resources(), make_requests())

    assert metrics["requested_units"] == 650
    assert metrics["allocated_units"] == 140
    assert version_metrics(rows, make_resources())["requested_units"] is None  # unknown, never wrong


def test_counts_are_one_definition_where_allocated_includes_pinned():
    found = counts(make_rows())

    assert found["allocated"] == 4 and found["pinned"] == 1
    assert found["allocated"] + found["unallocated"] + found["excluded"] == found["requests"]
    assert found["success_rate"] == 4 / 6


def test_counts_by_reason_list_the_largest_reason_first():
    rows = make_rows()
    rows.loc[rows["request_id"] == "Q1", ["status", "resource_id", "reason"]] = ["unallocated", None, "window_unavailable"]
    rows.loc[rows["request_id"] == "Q2", ["status", "resource_id", "reason"]] = ["unallocated", None, "window_unavailable"]

    assert list(counts_by_reason(rows).items()) == [("window_unavailable", 2), ("capacity_exhausted", 1),
                                                    ("excluded", 1)]


def test_the_gap_is_the_solvers_relative_gap_and_none_without_a_bound():
    assert relative_gap(990.0, 1000.0) == pytest.approx(0.01)
    assert relative_gap(5.0, 5.0) == 0.0
    assert relative_gap(1.0, None) is None and relative_gap(1.0, float("inf")) is None


@pytest.mark.parametrize(("name", "value", "text"), [
    ("gap", 2e-5, "0.002%"),
    ("gap", 0.0, "0.000%"),
    ("utilization", 0.8340757238307349, "83.4%"),
    ("success_rate", 0.6207, "62.1%"),
    ("objective", 1.53824e6, "1,538,240"),
    ("requested_units", 13285, "13,285"),
    ("solve_seconds", 10.11957373900077, "10.1 s"),
    ("bound", None, "–"),
])
def test_a_figure_reads_the_same_wherever_it_is_shown(name, value, text):
    assert format_figure(name, value) == text


def test_the_headline_labels_allocated_as_including_pinned():
    labels = dict(headline({"requests": 6, "allocated": 4, "pinned": 1, "gap": 2e-5}))

    assert labels == {"Requests": "6", "Allocated (incl. pinned)": "4", "Pinned": "1", "Gap": "0.002%"}
