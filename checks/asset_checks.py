"""Asset checks on the proposal and the final allocation: pure rules, evaluated by the assets.

The checks run inside the asset that produces the value (check_specs), because a separately
decorated check on a partitioned asset would load every partition instead of the run's one.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd

from batch.alert_rules import (
    RULE_LOW_SUCCESS_RATE,
    RULE_RESOURCE_OVER_CAPACITY,
    AlertThresholds,
    threshold_breaches,
    trend_band,
    trend_skip_reason,
)
from batch.alerts import Alert
from checks import names
from checks.table_metadata import table_metadata
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


def specs(asset: str, checks: dict[str, str], blocking: bool,
          partitions_def: dg.PartitionsDefinition | None = None) -> list[dg.AssetCheckSpec]:
    """The checks of one asset; with the asset's partitions, Dagster records each result for the run's
    month and the UI shows the check's status per month."""
    return [dg.AssetCheckSpec(name, asset=asset, blocking=blocking, description=text, partitions_def=partitions_def)
            for name, text in checks.items()]


def rows_result(name: str, offending: pd.DataFrame, what: str, month: str) -> dg.AssetCheckResult:
    """Passed when no row of the month offends; otherwise the count and the first rows as metadata. The
    count sits beside the number allowed (none), so the check's plot shows both."""
    return dg.AssetCheckResult(
        check_name=name, passed=offending.empty, severity=dg.AssetCheckSeverity.ERROR,
        description=f"{month}: " + (f"{len(offending)} {what}" if len(offending) else f"no {what}"),
        metadata={"month": month, "offending": len(offending), "allowed": 0,
                  **({"first_rows": table_metadata(offending, 20)} if len(offending) else {})},
    )


def proposal_results(instance, allocations: pd.DataFrame, month: str) -> list[dg.AssetCheckResult]:
    """The blocking checks of a proposal, by the solver's own validators."""
    return [
        rows_result(names.NO_RESOURCE_OVER_CAPACITY, over_capacity_rows(instance, allocations), "resources over capacity",
                    month),
        rows_result(names.NO_INELIGIBLE_PAIR, ineligible_rows(instance, allocations), "allocations on ineligible pairs",
                    month),
        rows_result(names.MUST_ALLOCATE_REQUESTS_SERVED, unserved_must_allocate(instance, allocations),
                    "must_allocate requests unallocated", month),
    ]


def trend_results(month: str, current: Mapping[str, Any], trailing: Sequence[Mapping[str, Any]],
                  resource_utilization: Sequence[Mapping[str, Any]], thresholds: AlertThresholds,
                  ) -> tuple[list[dg.AssetCheckResult], dict[str, str]]:
    """The version's checks, and the trend checks skipped (not yielded, so Dagster shows them skipped) with why.

    Trend checks warn when a figure is far from the trailing months; threshold checks fail (error)
    whatever the history, so a first month with most requests unallocated is flagged. Each result names
    the month and carries the figure beside what it is compared against, so the UI's plots show both.
    """
    results, skipped = [], {}
    for name, metric, _rule in TREND_METRICS:
        band = trend_band(month, metric, current, trailing)
        if band is None:
            skipped[name] = trend_skip_reason(month, metric, trailing) or f"skipped: {month} has no {metric}"
            continue
        words = (f"{metric.replace('_', ' ')} {band.value:.3f}, band {band.low:.3f} to {band.high:.3f} around the "
                 f"mean of the {band.months} trailing months")
        results.append(dg.AssetCheckResult(
            check_name=name, passed=not band.outside(), severity=dg.AssetCheckSeverity.WARN,
            description=f"{month}: {words}" + (": outside" if band.outside() else ": within"),
            metadata={"month": month, metric: _round(band.value), "band_low": _round(band.low),
                      "band_high": _round(band.high), "trailing_mean": _round(band.mean), "trailing_months": band.months}))
    breaches = {a.rule: a for a in threshold_breaches(month, current, resource_utilization, thresholds)}
    rate = current.get("success_rate")
    results.append(_threshold_result(
        SUCCESS_RATE_AT_LEAST_MINIMUM, month, breaches.get(RULE_LOW_SUCCESS_RATE),
        f"success rate {_share(rate)}, minimum {thresholds.min_success_rate:.0%}",
        {"success_rate": None if rate is None else float(rate), "min_success_rate": thresholds.min_success_rate}))
    finite = [float(r["utilization"]) for r in resource_utilization
              if r.get("utilization") is not None and math.isfinite(float(r["utilization"]))]
    highest = max(finite, default=None)
    results.append(_threshold_result(
        NO_RESOURCE_ABOVE_MAXIMUM_UTILIZATION, month, breaches.get(RULE_RESOURCE_OVER_CAPACITY),
        f"highest resource utilization {_share(highest)}, maximum {thresholds.max_resource_utilization:.0%}",
        {"highest_resource_utilization": highest, "max_resource_utilization": thresholds.max_resource_utilization}))
    return results, skipped


def _round(value: float) -> float:
    """A ratio to four places: the UI shows metadata floats as they are (0.8033333333333333)."""
    return round(float(value), 4)


def _share(value: Any) -> str:
    return "–" if value is None else f"{float(value):.1%}"


def _threshold_result(name: str, month: str, alert: Alert | None, words: str,
                      figures: dict[str, float | None]) -> dg.AssetCheckResult:
    """A threshold check: failed (error) when its rule raised an alert; the figure and its threshold in metadata."""
    return dg.AssetCheckResult(
        check_name=name, passed=alert is None, severity=dg.AssetCheckSeverity.ERROR,
        description=f"{month}: " + (alert.message if alert else f"{words}: within the threshold"),
        metadata={"month": month, **{k: _round(v) for k, v in figures.items() if v is not None}})


def final_matches_result(final: pd.DataFrame, approved: pd.DataFrame, version: int, month: str) -> dg.AssetCheckResult:
    """The official export holds exactly the rows of the approved version."""
    cols = [c for c in approved.columns if c != "version"]
    a = final[cols].sort_values("request_id").reset_index(drop=True)
    b = approved[cols].sort_values("request_id").reset_index(drop=True)
    return dg.AssetCheckResult(check_name=names.FINAL_ALLOCATION_MATCHES_APPROVED_VERSION,
                               passed=bool(a.equals(b)),
                               description=f"{month}: the official copy " + ("holds" if a.equals(b) else "differs from")
                               + f" the rows of approved version {version}",
                               metadata={"month": month, "approved_version": version, "rows": len(a)})
