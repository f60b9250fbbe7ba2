"""What the Dagster UI shows of a check without a click: its month, its figure beside its threshold, tables inline."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from batch.alert_rules import AlertThresholds
from checks import names
from checks.asset_checks import (
    NO_RESOURCE_ABOVE_MAXIMUM_UTILIZATION,
    SUCCESS_RATE_AT_LEAST_MINIMUM,
    rows_result,
    trend_results,
)
from checks.table_metadata import table_metadata

MONTH = "2025-03"
STEADY = [{"month": "2025-01", "unallocated_ratio": 0.10, "utilization": 0.80},
          {"month": "2025-02", "unallocated_ratio": 0.12, "utilization": 0.82}]
UTILIZATION = [{"resource_id": "R1", "planned_units": 9, "capacity": 10, "utilization": 0.9},
               {"resource_id": "R2", "planned_units": 0, "capacity": 0, "utilization": float("nan")}]


def figures(result: dg.AssetCheckResult) -> dict:
    return {key: getattr(value, "value", value) for key, value in result.metadata.items()}


def test_every_version_check_names_its_month_in_description_and_metadata():
    current = {"success_rate": 0.62, "unallocated_ratio": 0.38, "utilization": 0.81}

    results, skipped = trend_results(MONTH, current, STEADY, UTILIZATION, AlertThresholds(min_success_rate=0.7))

    assert skipped == {} and len(results) == 4
    for result in results:
        assert result.description.startswith(f"{MONTH}: ") and figures(result)["month"] == MONTH


def test_threshold_checks_carry_their_figure_beside_the_threshold_it_is_held_to():
    current = {"success_rate": 0.6233333333333333}

    results, _ = trend_results(MONTH, current, [], UTILIZATION, AlertThresholds(min_success_rate=0.7))

    found = {r.check_name: r for r in results}
    rate = found[SUCCESS_RATE_AT_LEAST_MINIMUM]  # rounded: the UI shows floats as they are
    assert rate.passed is False and figures(rate) == {"month": MONTH, "success_rate": 0.6233, "min_success_rate": 0.7}
    busiest = found[NO_RESOURCE_ABOVE_MAXIMUM_UTILIZATION]
    assert busiest.passed is True
    assert figures(busiest) == {"month": MONTH, "highest_resource_utilization": 0.9, "max_resource_utilization": 1.0}
    assert "highest resource utilization 90.0%, maximum 100%: within the threshold" in busiest.description


def test_trend_checks_carry_the_band_their_figure_is_compared_with():
    results, _ = trend_results(MONTH, {"success_rate": 0.9, "unallocated_ratio": 0.38, "utilization": 0.81},
                               STEADY, [], AlertThresholds())

    trend = {r.check_name: figures(r) for r in results}[names.UNALLOCATED_RATIO_NEAR_TRAILING_MONTHS]
    assert trend["unallocated_ratio"] == 0.38 and trend["trailing_months"] == 2
    assert trend["band_low"] == pytest.approx(0.01) and trend["band_high"] == pytest.approx(0.21)


def test_offending_rows_are_an_inline_table_that_says_how_many_more_there_are():
    offending = pd.DataFrame({"resource_id": [f"R{i}" for i in range(25)], "over_by": range(25)})

    result = rows_result(names.NO_RESOURCE_OVER_CAPACITY, offending, "resources over capacity", MONTH)

    table = result.metadata["first_rows"]
    assert isinstance(table, dg.TableMetadataValue) and len(table.records) == 21
    assert table.records[0].data == {"resource_id": "R0", "over_by": 0}
    assert table.records[-1].data == {"resource_id": "… and 5 more", "over_by": None}
    assert result.description == f"{MONTH}: 25 resources over capacity"


def test_a_table_keeps_numbers_as_numbers_and_missing_values_as_none():
    value = table_metadata(pd.DataFrame({"service": ["repair"], "units": [3], "share": [float("nan")]}))

    assert value.records[0].data == {"service": "repair", "units": 3, "share": None}
    assert [(c.name, c.type) for c in value.schema.columns] == [("service", "string"), ("units", "int"),
                                                                  ("share", "float")]
