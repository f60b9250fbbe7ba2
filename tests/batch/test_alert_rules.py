"""Alert rules: each fires on its condition, stays quiet otherwise, and keys alerts stably."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from batch.alert_rules import (
    RULE_FAILED_CHECK,
    RULE_LOW_SUCCESS_RATE,
    RULE_MONTH_UNLOCKED,
    RULE_RESOURCE_OVER_CAPACITY,
    RULE_RUN_FAILURE,
    RULE_STALE_LOCK,
    RULE_TOO_MANY_ERRORS,
    RULE_UNALLOCATED_RATIO_ANOMALY,
    RULE_UNEXPECTED_LOCK,
    RULE_UTILIZATION_ANOMALY,
    AlertThresholds,
    failed_checks,
    ratio_anomalies,
    run_failures,
    stale_locks,
    threshold_breaches,
    trend_skip_reason,
    unexpected_locks,
    unlock_alert,
)
from batch.params import parse_assignment, solver_params

NOW = datetime(2025, 3, 15, 12, 0, tzinfo=UTC)
STEADY = [
    {"month": "2024-12", "unallocated_ratio": 0.10, "utilization": 0.80},
    {"month": "2025-01", "unallocated_ratio": 0.12, "utilization": 0.82},
    {"month": "2025-02", "unallocated_ratio": 0.11, "utilization": 0.81},
]


def one_sentence(message: str) -> bool:
    return message.endswith(".") and "\n" not in message


# ratio_anomalies


def test_ratio_anomaly_fires_when_the_unallocated_ratio_jumps():
    alerts = ratio_anomalies("2025-03", {"unallocated_ratio": 0.40, "utilization": 0.81}, STEADY)

    assert [alert.rule for alert in alerts] == [RULE_UNALLOCATED_RATIO_ANOMALY]
    alert = alerts[0]
    assert alert.severity == "warning" and alert.month == "2025-03"
    assert alert.details["trailing_mean"] == pytest.approx(0.11)
    assert alert.details["band"] == pytest.approx(0.10)  # 3 * stdev 0.01 < min_abs
    assert "above" in alert.message and one_sentence(alert.message)


def test_ratio_anomaly_fires_when_utilization_drops():
    alerts = ratio_anomalies("2025-03", {"unallocated_ratio": 0.11, "utilization": 0.50}, STEADY)

    assert [alert.rule for alert in alerts] == [RULE_UTILIZATION_ANOMALY]
    assert "below" in alerts[0].message


def test_ratio_anomaly_is_quiet_within_the_minimum_band():
    assert ratio_anomalies("2025-03", {"unallocated_ratio": 0.20, "utilization": 0.72}, STEADY) == []


def test_ratio_anomaly_band_widens_with_the_trailing_spread():
    noisy = [{"month": "2024-12", "utilization": 0.2}, {"month": "2025-01", "utilization": 0.8}]

    # mean 0.5, stdev ~0.424: 3 sigma ~1.27 covers any utilization in [0, 1]
    assert ratio_anomalies("2025-02", {"utilization": 1.0}, noisy) == []
    assert len(ratio_anomalies("2025-02", {"utilization": 1.0}, noisy, threshold_sigma=1.0)) == 1


def test_ratio_anomaly_needs_two_trailing_months():
    assert ratio_anomalies("2025-03", {"unallocated_ratio": 0.9, "utilization": 0.1}, STEADY[:1]) == []


def test_ratio_anomaly_ignores_trailing_entries_of_the_same_month_and_missing_values():
    trailing = [*STEADY[:2], {"month": "2025-03", "utilization": 0.1},
                {"month": "2024-11", "utilization": None}]

    alerts = ratio_anomalies("2025-03", {"utilization": 0.1}, trailing)

    # Counting the same month's 0.1 would widen the band (stdev ~0.41) and hide the drop.
    assert [alert.details["trailing_months"] for alert in alerts] == [2]


def test_ratio_anomaly_derives_the_ratio_from_counts():
    alerts = ratio_anomalies("2025-03", {"requests": 10, "unallocated": 5}, STEADY)

    assert [alert.details["value"] for alert in alerts] == [0.5]


def test_ratio_anomaly_dedup_key_is_stable_and_includes_the_version():
    current = {"unallocated_ratio": 0.4, "version": 3}

    first = ratio_anomalies("2025-03", current, STEADY)[0]
    again = ratio_anomalies("2025-03", dict(current, unallocated_ratio=0.5), STEADY)[0]
    next_version = ratio_anomalies("2025-03", dict(current, version=4), STEADY)[0]

    assert first.dedup_key == again.dedup_key == "unallocated_ratio_anomaly:2025-03:v3"
    assert next_version.dedup_key != first.dedup_key


# failed_checks


def test_failed_checks_alert_only_on_failures_with_mapped_severity():
    results = [
        {"check_name": "no_resource_over_capacity", "passed": False, "severity": "ERROR",
         "description": "R1 is 20 units over capacity"},
        {"check_name": "unallocated_ratio_near_trailing", "passed": False, "severity": "WARN",
         "description": "ratio far from trailing months."},
        {"check_name": "no_ineligible_pair", "passed": True, "severity": "ERROR", "description": ""},
    ]

    alerts = failed_checks("2025-03", results)

    assert [(alert.rule, alert.severity, alert.details["check_name"]) for alert in alerts] == [
        (RULE_FAILED_CHECK, "error", "no_resource_over_capacity"),
        (RULE_FAILED_CHECK, "warning", "unallocated_ratio_near_trailing"),
    ]
    assert alerts[0].dedup_key == "failed_check:2025-03:no_resource_over_capacity"
    assert all(one_sentence(alert.message) for alert in alerts)
    assert not alerts[1].message.endswith("..")


def test_failed_checks_are_quiet_when_everything_passed():
    assert failed_checks("2025-03", [{"check_name": "x", "passed": True, "severity": "ERROR"}]) == []


def test_failed_check_with_unknown_severity_is_an_error():
    alerts = failed_checks("2025-03", [{"check_name": "x", "passed": False, "severity": None}])

    assert alerts[0].severity == "error"


# run_failures


def failure(run_id: str, hours_ago: float, month: str | None = "2025-03") -> dict:
    return {"run_id": run_id, "job_name": "execute", "month": month,
            "failed_at": NOW - timedelta(hours=hours_ago), "error": "Solver timed out\ntraceback..."}


def test_each_failed_run_raises_an_error_alert_keyed_by_run_id():
    alerts = run_failures([failure("r1", 1), failure("r2", 2, month=None)], now=NOW)

    assert [(alert.rule, alert.severity, alert.dedup_key) for alert in alerts] == [
        (RULE_RUN_FAILURE, "error", "run_failure:r1"),
        (RULE_RUN_FAILURE, "error", "run_failure:r2"),
    ]
    assert alerts[0].message == "Run r1 of execute for 2025-03 failed: Solver timed out."
    assert alerts[1].month is None


def test_more_than_max_failures_in_the_window_adds_too_many_errors():
    failures = [failure(f"r{index}", index) for index in range(1, 5)]

    alerts = run_failures(failures, window_hours=24, max_failures=3, now=NOW)

    extra = [alert for alert in alerts if alert.rule == RULE_TOO_MANY_ERRORS]
    assert len(alerts) == 5 and len(extra) == 1
    assert extra[0].details["run_ids"] == ["r1", "r2", "r3", "r4"]
    assert extra[0].severity == "error" and extra[0].month is None


def test_exactly_max_failures_or_old_ones_do_not_add_too_many_errors():
    at_limit = [failure(f"r{index}", index) for index in range(1, 4)]
    with_old = at_limit + [failure("old", 30)]

    assert RULE_TOO_MANY_ERRORS not in {alert.rule for alert in run_failures(at_limit, now=NOW)}
    assert RULE_TOO_MANY_ERRORS not in {alert.rule for alert in run_failures(with_old, now=NOW)}


def test_too_many_errors_key_is_stable_within_a_window_bucket():
    bucket_start = datetime(2025, 3, 15, 0, 0, tzinfo=UTC)
    failures = [{"run_id": f"r{index}", "failed_at": bucket_start + timedelta(minutes=10 * index)}
                for index in range(1, 5)]

    def key(now):
        keys = [a.dedup_key for a in run_failures(failures, now=now) if a.rule == RULE_TOO_MANY_ERRORS]
        assert len(keys) == 1
        return keys[0]

    assert key(bucket_start + timedelta(hours=1)) == key(bucket_start + timedelta(hours=20))
    assert key(bucket_start + timedelta(hours=1)) != key(bucket_start + timedelta(hours=24, minutes=5))


def test_run_failures_accept_iso_strings_and_epoch_seconds():
    failures = [
        {"run_id": "a", "failed_at": (NOW - timedelta(hours=1)).isoformat()},
        {"run_id": "b", "failed_at": (NOW - timedelta(hours=2)).timestamp()},
        {"run_id": "c", "failed_at": "2025-03-15T10:00:00"},  # naive = UTC
    ]

    alerts = run_failures(failures, max_failures=2, now=NOW)

    assert [alert.rule for alert in alerts][-1] == RULE_TOO_MANY_ERRORS


def test_no_failures_no_alerts():
    assert run_failures([], now=NOW) == []


# stale_locks


def lock(month="2025-03", hours_left=1.0, **extra) -> dict:
    return {"month": month, "holder": "alice", "admins": ["alice", "bob"],
            "acquired_at": NOW - timedelta(hours=4), "expires_at": NOW + timedelta(hours=hours_left), **extra}


def test_a_lock_held_past_its_expiry_is_stale():
    alerts = stale_locks([lock(hours_left=-2)], now=NOW)

    assert [(alert.rule, alert.severity, alert.month) for alert in alerts] == [
        (RULE_STALE_LOCK, "warning", "2025-03")]
    assert alerts[0].details["overdue_hours"] == 2
    assert alerts[0].dedup_key == "stale_lock:2025-03:alice:2025-03-15T08:00:00+00:00"
    assert one_sentence(alerts[0].message)


def test_live_released_or_non_expiring_locks_are_not_stale():
    locks = [lock(hours_left=1), lock(hours_left=-2, released_at=NOW), lock(expires_at=None)]

    assert stale_locks(locks, now=NOW) == []


def test_stale_lock_key_does_not_change_while_it_stays_stale():
    stale = lock(hours_left=-1)

    assert (stale_locks([stale], now=NOW)[0].dedup_key
            == stale_locks([stale], now=NOW + timedelta(hours=5))[0].dedup_key)


# unexpected_locks


@pytest.mark.parametrize("phase", ["finalized", "open"])
def test_a_temporary_lock_on_a_finalized_or_open_month_is_unexpected(phase):
    alerts = unexpected_locks([lock()], {"2025-03": phase})

    assert [(alert.rule, alert.details["phase"]) for alert in alerts] == [(RULE_UNEXPECTED_LOCK, phase)]


def test_a_lock_on_a_month_without_any_phase_is_unexpected():
    assert len(unexpected_locks([lock(month="2026-01")], {})) == 1


@pytest.mark.parametrize("phase", ["planning", "proposed"])
def test_a_temporary_lock_during_planning_or_review_is_expected(phase):
    assert unexpected_locks([lock()], {"2025-03": phase}) == []


def test_a_final_lock_on_a_finalized_month_is_expected():
    assert unexpected_locks([lock(kind="final")], {"2025-03": "finalized"}) == []


# unlock_alert


def test_an_unlock_always_alerts_with_who_and_why():
    alert = unlock_alert("2025-02", "alice", "bob", "Wrong capacity for R1.", at=NOW)

    assert (alert.rule, alert.severity, alert.month) == (RULE_MONTH_UNLOCKED, "warning", "2025-02")
    assert alert.message == "2025-02 was unlocked by alice, approved by bob: Wrong capacity for R1."
    assert alert.details["approver"] == "bob"
    assert alert.dedup_key == "month_unlocked:2025-02:alice:2025-03-15T12:00:00+00:00"


def test_an_unlock_without_a_known_actor_still_alerts():
    alert = unlock_alert("2025-02", None, "bob", "why", at=NOW)

    assert "unknown actor" in alert.message


def test_two_unlocks_at_different_times_have_different_keys():
    first = unlock_alert("2025-02", "alice", "bob", "why", at=NOW)
    second = unlock_alert("2025-02", "alice", "bob", "why", at=NOW + timedelta(days=1))

    assert first.dedup_key != second.dedup_key


def test_every_alert_serialises_to_json():
    import json

    alerts = (ratio_anomalies("2025-03", {"unallocated_ratio": 0.4}, STEADY)
              + run_failures([failure("r1", 1)], now=NOW)
              + stale_locks([lock(hours_left=-1)], now=NOW)
              + [unlock_alert("2025-02", "alice", "bob", "why", at=NOW)])

    for alert in alerts:
        assert json.loads(json.dumps(alert.to_dict()))["dedup_key"] == alert.dedup_key


# absolute thresholds and trend skips


def test_a_first_month_with_most_requests_unallocated_alerts_without_any_trailing_month():
    first = {"month": "2025-03", "version": 1, "requests": 1000, "allocated": 100, "success_rate": 0.10,
             "unallocated_ratio": 0.90}

    assert ratio_anomalies("2025-03", first, []) == []  # the trend rule has nothing to compare with
    alerts = threshold_breaches("2025-03", first, [])

    assert [a.rule for a in alerts] == [RULE_LOW_SUCCESS_RATE]
    assert alerts[0].severity == "error" and "10.0%" in alerts[0].message and one_sentence(alerts[0].message)
    assert alerts[0].dedup_key == "success_rate_below_minimum:2025-03:v1"


def test_a_success_rate_at_the_minimum_raises_nothing():
    assert threshold_breaches("2025-03", {"success_rate": 0.5}, []) == []


def test_every_resource_above_its_capacity_is_named_in_one_alert():
    resources = [{"resource_id": "R1", "planned_units": 12, "capacity": 10, "utilization": 1.2},
                 {"resource_id": "R2", "planned_units": 10, "capacity": 10, "utilization": 1.0},
                 {"resource_id": "R3", "planned_units": 3, "capacity": 0, "utilization": None}]

    alerts = threshold_breaches("2025-03", {"success_rate": 0.9, "version": 2}, resources)

    assert [a.rule for a in alerts] == [RULE_RESOURCE_OVER_CAPACITY]
    assert alerts[0].details["resources"] == ["R1", "R3"]


def test_thresholds_come_from_the_months_alert_parameters_else_the_defaults():
    assert AlertThresholds.from_params({}) == AlertThresholds(0.5, 1.0)
    stricter = AlertThresholds.from_params({"alert.min_success_rate": 0.8, "time_limit_s": 5})

    assert stricter == AlertThresholds(min_success_rate=0.8, max_resource_utilization=1.0)
    assert [a.rule for a in threshold_breaches("2025-03", {"success_rate": 0.75}, [], stricter)] == [
        RULE_LOW_SUCCESS_RATE]


@pytest.mark.parametrize(("trailing", "skipped"), [([], True), (STEADY[:1], True), (STEADY[:2], False)])
def test_a_trend_is_skipped_with_its_reason_until_two_trailing_months_exist(trailing, skipped):
    reason = trend_skip_reason("2025-03", "utilization", trailing)

    assert (reason is not None) is skipped
    if skipped:
        assert reason.startswith(f"skipped: {len(trailing)} trailing month") and "2 needed" in reason


def test_the_month_itself_does_not_count_as_a_trailing_month():
    assert trend_skip_reason("2025-02", "utilization", STEADY[1:]) is not None


def test_alert_thresholds_are_month_parameters_the_solver_ignores():
    stored = dict(parse_assignment(a) for a in ("alert.min_success_rate=0.8", "time_limit_s=3"))

    assert AlertThresholds.from_params(stored).min_success_rate == 0.8
    assert solver_params(stored).time_limit_s == 3.0


def test_a_failed_check_that_names_its_month_is_alerted_with_the_month_said_once():
    alert, = failed_checks("2025-03", [{"check_name": "success_rate_at_least_minimum", "passed": False,
                                        "description": "2025-03: Only 10.0% of the requests are allocated."}])

    assert alert.message == ("Check success_rate_at_least_minimum failed for 2025-03: Only 10.0% of the requests "
                             "are allocated.")
