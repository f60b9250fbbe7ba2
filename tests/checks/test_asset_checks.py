"""The version's checks: trend checks skipped (not passed) without history, thresholds from the first month."""

from __future__ import annotations

import dagster as dg

from batch.alert_rules import AlertThresholds
from checks import names
from checks.asset_checks import (
    NO_RESOURCE_ABOVE_MAXIMUM_UTILIZATION,
    SUCCESS_RATE_AT_LEAST_MINIMUM,
    TREND_CHECKS,
    trend_results,
)

MONTH = "2025-03"
STEADY = [{"month": "2025-01", "unallocated_ratio": 0.10, "utilization": 0.80},
          {"month": "2025-02", "unallocated_ratio": 0.11, "utilization": 0.81}]


def by_name(results: list[dg.AssetCheckResult]) -> dict[str, dg.AssetCheckResult]:
    return {r.check_name: r for r in results}


def test_a_first_month_skips_the_trend_checks_and_fails_the_success_rate_check():
    starved = {"month": MONTH, "version": 1, "success_rate": 0.10, "unallocated_ratio": 0.90, "utilization": 0.99}

    results, skipped = trend_results(MONTH, starved, [], [], AlertThresholds())

    assert set(skipped) == {names.UNALLOCATED_RATIO_NEAR_TRAILING_MONTHS, names.UTILIZATION_NEAR_TRAILING_MONTHS}
    assert all(reason.startswith("skipped: 0 trailing months") for reason in skipped.values())
    found = by_name(results)
    assert set(found) == {SUCCESS_RATE_AT_LEAST_MINIMUM, NO_RESOURCE_ABOVE_MAXIMUM_UTILIZATION}
    assert found[SUCCESS_RATE_AT_LEAST_MINIMUM].passed is False
    assert found[SUCCESS_RATE_AT_LEAST_MINIMUM].severity == dg.AssetCheckSeverity.ERROR
    assert found[NO_RESOURCE_ABOVE_MAXIMUM_UTILIZATION].passed is True


def test_with_two_trailing_months_the_trend_checks_run_and_warn_when_far():
    current = {"month": MONTH, "version": 1, "success_rate": 0.6, "unallocated_ratio": 0.40, "utilization": 0.80}

    results, skipped = trend_results(MONTH, current, STEADY, [], AlertThresholds())

    assert skipped == {}
    found = by_name(results)
    assert set(found) == set(TREND_CHECKS)
    assert found[names.UNALLOCATED_RATIO_NEAR_TRAILING_MONTHS].passed is False
    assert found[names.UNALLOCATED_RATIO_NEAR_TRAILING_MONTHS].severity == dg.AssetCheckSeverity.WARN
    assert found[names.UTILIZATION_NEAR_TRAILING_MONTHS].passed is True
    assert found[SUCCESS_RATE_AT_LEAST_MINIMUM].passed is True


def test_a_resource_over_capacity_fails_its_threshold_check():
    over = [{"resource_id": "R9", "planned_units": 11, "capacity": 10, "utilization": 1.1}]

    results, _ = trend_results(MONTH, {"success_rate": 0.9}, [], over, AlertThresholds())

    check = by_name(results)[NO_RESOURCE_ABOVE_MAXIMUM_UTILIZATION]
    assert check.passed is False and "R9" in check.description
