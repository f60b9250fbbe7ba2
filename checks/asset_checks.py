"""Asset checks on the proposal and the final allocation: pure rules, evaluated by the assets.

The checks run inside the asset that produces the value (check_specs), because a separately
decorated check on a partitioned asset would load every partition instead of the run's one.
"""

import dagster as dg
import pandas as pd

from batch.alert_rules import ratio_anomalies
from checks import names
from solvers.validation import ineligible_rows, over_capacity_rows, unserved_must_allocate

PROPOSAL_CHECKS = {
    names.NO_RESOURCE_OVER_CAPACITY: "No resource is allocated more units than its monthly capacity.",
    names.NO_INELIGIBLE_PAIR: "Every allocation uses an eligible (request, resource) pair.",
    names.MUST_ALLOCATE_REQUESTS_SERVED: "Every must_allocate request is allocated.",
}
TREND_CHECKS = {
    names.UNALLOCATED_RATIO_NEAR_TRAILING_MONTHS: "The unallocated ratio is near that of the trailing months.",
    names.UTILIZATION_NEAR_TRAILING_MONTHS: "Capacity utilization is near that of the trailing months.",
}


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


def trend_results(month: str, current: dict, trailing: list[dict]) -> list[dg.AssetCheckResult]:
    """Warnings when the unallocated ratio or utilization is far from the trailing months."""
    found = {a.rule: a for a in ratio_anomalies(month, current, trailing)}
    results = []
    for name, rule in ((names.UNALLOCATED_RATIO_NEAR_TRAILING_MONTHS, "unallocated_ratio_anomaly"),
                       (names.UTILIZATION_NEAR_TRAILING_MONTHS, "utilization_anomaly")):
        alert = found.get(rule)
        results.append(dg.AssetCheckResult(
            check_name=name, passed=alert is None, severity=dg.AssetCheckSeverity.WARN,
            description=alert.message if alert else f"compared with {len(trailing)} trailing months",
            metadata={"trailing_months": len(trailing)}))
    return results


def final_matches_result(final: pd.DataFrame, approved: pd.DataFrame, version: int) -> dg.AssetCheckResult:
    """The official export holds exactly the rows of the approved version."""
    cols = [c for c in approved.columns if c != "version"]
    a = final[cols].sort_values("request_id").reset_index(drop=True)
    b = approved[cols].sort_values("request_id").reset_index(drop=True)
    return dg.AssetCheckResult(check_name=names.FINAL_ALLOCATION_MATCHES_APPROVED_VERSION,
                               passed=bool(a.equals(b)), metadata={"approved_version": version, "rows": len(a)})
