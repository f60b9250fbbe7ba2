"""Asset checks on the proposal and the final allocation: pure rules, evaluated by the assets.

The checks run inside the asset that produces the value (check_specs), because a separately
decorated check on a partitioned asset would load every partition instead of the run's one.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd

from batch.alert_rules import (
    RULE_LOW_SUCCESS_RATE,
    RULE_RESOURCE_OVER_CAPACITY,
    AlertThresholds,
    ratio_anomalies,
    threshold_breaches,
    trend_skip_reason,
)
from checks import names
from solvers.validation import ineligible_rows, over_capacity_rows, unserved_must_allocate

PROPOSAL_CHECKS = {
    names.NO_RESOURCE_OVER_CAPACITY: "No resource is allocated more units than its monthly capacity.",
    names.NO_INELIGIBLE_PAIR: "Every allocation uses an eligible (request, resource) pair.",
    names.MUST_ALLOCATE_REQUESTS_SERVED: "Every must_allocate request is allocated.",
}
SUCCESS_RATE_AT_LEAST_MINIMUM = "success_rate_at_least_minimum"
NO_RESOURCE_ABOVE_MAXIMUM_UTILIZATION = "no_resource_above_maximum_utilization"
TREND_CHECKS = {
    names.UNALLOCATED_RATIO_NEAR_TRAILING_MONTHS: "The unallocated ratio is near that of the trailing months "
                                                  "(skipped while fewer than two trailing months exist).",
    names.UTILIZATION_NEAR_TRAILING_MONTHS: "Capacity utilization is near that of the trailing months "
                                            "(skipped while fewer than two trailing months exist).",
    SUCCESS_RATE_AT_LEAST_MINIMUM: "At least the minimum share of requests is allocated (default 50 %, "
                                   "parameter alert.min_success_rate), from the first month on.",
    NO_RESOURCE_ABOVE_MAXIMUM_UTILIZATION: "No resource is planned above its maximum utilization (default 100 % "
                                           "of capacity, parameter alert.max_resource_utilization).",
}
TREND_METRICS = ((names.UNALLOCATED_RATIO_NEAR_TRAILING_MONTHS, "unallocated_ratio", "unallocated_ratio_anomaly"),
                 (names.UTILIZATION_NEAR_TRAILING_MONTHS, "utilization", "utilization_anomaly"))
THRESHOLD_RULES = ((SUCCESS_RATE_AT_LEAST_MINIMUM, RULE_LOW_SUCCESS_RATE),
                   (NO_RESOURCE_ABOVE_MAXIMUM_UTILIZATION, RULE_RESOURCE_OVER_CAPACITY))


def specs(asset: str, checks: dict[str, str], blocking: bool) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=asset, blocking=blocking, description=text)
            for name, text in checks.items()]


def rows_result(name: str, offending: pd.DataFrame, what: str) -> dg.AssetCheckResult:
    """Passed when no row offends; otherwise the count and the first rows as metadata."""
    return dg.AssetCheckResult(
        check_name=name, passed=offending.empty, severity=dg.AssetCheckSeverity.ERROR,
        description=None if offending.empty else f"{len(offending)} {what}",
        metadata={"offending": len(offending),
                  "first_rows": dg.MetadataValue.md(offending.head(20).to_markdown(index=False) if len(offending) else "none")},
    )


def proposal_results(instance, allocations: pd.DataFrame) -> list[dg.AssetCheckResult]:
    """The blocking checks of a proposal, by the solver's own validators."""
    return [
        rows_result(names.NO_RESOURCE_OVER_CAPACITY, over_capacity_rows(instance, allocations), "resources over capacity"),
        rows_result(names.NO_INELIGIBLE_PAIR, ineligible_rows(instance, allocations), "allocations on ineligible pairs"),
        rows_result(names.MUST_ALLOCATE_REQUESTS_SERVED, unserved_must_allocate(instance, allocations),
                    "must_allocate requests unallocated"),
    ]


def trend_results(month: str, current: Mapping[str, Any], trailing: Sequence[Mapping[str, Any]],
                  resource_utilization: Sequence[Mapping[str, Any]], thresholds: AlertThresholds,
                  ) -> tuple[list[dg.AssetCheckResult], dict[str, str]]:
    """The version's checks, and the trend checks skipped (not yielded, so Dagster shows them skipped) with why.

    Trend checks warn when a figure is far from the trailing months; threshold checks fail (error)
    whatever the history, so a first month with most requests unallocated is flagged.
    """
    found = {a.rule: a for a in ratio_anomalies(month, current, trailing)}
    results, skipped = [], {}
    for name, metric, rule in TREND_METRICS:
        reason = trend_skip_reason(month, metric, trailing)
        if reason is not None:
            skipped[name] = reason
            continue
        alert = found.get(rule)
        results.append(dg.AssetCheckResult(
            check_name=name, passed=alert is None, severity=dg.AssetCheckSeverity.WARN,
            description=alert.message if alert else f"within the band of the {len(trailing)} trailing months",
            metadata={"trailing_months": len(trailing)}))
    breaches = {a.rule: a for a in threshold_breaches(month, current, resource_utilization, thresholds)}
    for name, rule in THRESHOLD_RULES:
        alert = breaches.get(rule)
        results.append(dg.AssetCheckResult(
            check_name=name, passed=alert is None, severity=dg.AssetCheckSeverity.ERROR,
            description=alert.message if alert else "within the threshold",
            metadata={"min_success_rate": thresholds.min_success_rate,
                      "max_resource_utilization": thresholds.max_resource_utilization}))
    return results, skipped


def final_matches_result(final: pd.DataFrame, approved: pd.DataFrame, version: int) -> dg.AssetCheckResult:
    """The official export holds exactly the rows of the approved version."""
    cols = [c for c in approved.columns if c != "version"]
    a = final[cols].sort_values("request_id").reset_index(drop=True)
    b = approved[cols].sort_values("request_id").reset_index(drop=True)
    return dg.AssetCheckResult(check_name=names.FINAL_ALLOCATION_MATCHES_APPROVED_VERSION,
                               passed=bool(a.equals(b)), metadata={"approved_version": version, "rows": len(a)})
