"""Asset checks on the proposal, the version and the final allocation: thin wrappers of pure rules."""


import dagster as dg
import pandas as pd

from assets.monthly import ProposalResult, allocation_export, allocation_proposal, final_allocation
from checks import names
from resources.dagster_resources import ControlStoreResource, StorageResource


def _rows_result(name: str, offending: pd.DataFrame, what: str) -> dg.AssetCheckResult:
    """Passed when no row offends; otherwise the count and the first rows as metadata."""
    return dg.AssetCheckResult(
        check_name=name, passed=offending.empty, severity=dg.AssetCheckSeverity.ERROR,
        description=None if offending.empty else f"{len(offending)} {what}",
        metadata={"offending": len(offending),
                  "first_rows": dg.MetadataValue.md(offending.head(20).to_markdown(index=False) if len(offending) else "none")},
    )


@dg.asset_check(asset=allocation_proposal, name=names.NO_RESOURCE_OVER_CAPACITY, blocking=True,
                description="No resource is allocated more units than its monthly capacity.")
def no_resource_over_capacity(allocation_proposal: ProposalResult) -> dg.AssetCheckResult:
    from solvers.validation import over_capacity_rows

    return _rows_result(names.NO_RESOURCE_OVER_CAPACITY,
                        over_capacity_rows(allocation_proposal.instance, allocation_proposal.proposal.allocations),
                        "resources over capacity")


@dg.asset_check(asset=allocation_proposal, name=names.NO_INELIGIBLE_PAIR, blocking=True,
                description="Every allocation uses an eligible (request, resource) pair.")
def no_ineligible_pair(allocation_proposal: ProposalResult) -> dg.AssetCheckResult:
    from solvers.validation import ineligible_rows

    return _rows_result(names.NO_INELIGIBLE_PAIR,
                        ineligible_rows(allocation_proposal.instance, allocation_proposal.proposal.allocations),
                        "allocations on ineligible pairs")


@dg.asset_check(asset=allocation_proposal, name=names.MUST_ALLOCATE_REQUESTS_SERVED, blocking=True,
                description="Every must_allocate request is allocated.")
def must_allocate_requests_served(allocation_proposal: ProposalResult) -> dg.AssetCheckResult:
    from solvers.validation import unserved_must_allocate

    return _rows_result(names.MUST_ALLOCATE_REQUESTS_SERVED,
                        unserved_must_allocate(allocation_proposal.instance, allocation_proposal.proposal.allocations),
                        "must_allocate requests unallocated")


@dg.asset_check(asset=final_allocation, name=names.FINAL_ALLOCATION_MATCHES_APPROVED_VERSION, blocking=True,
                description="The official export holds exactly the rows of the approved version.")
def final_allocation_matches_approved_version(context: dg.AssetCheckExecutionContext,
                                              control: ControlStoreResource,
                                              storage: StorageResource) -> dg.AssetCheckResult:
    month = context.partition_key if context.has_partition_key else None
    row = control.store().month(month)
    exports = storage.exports()
    if row["final_version"] is None or exports.final_manifest(month) is None:
        return dg.AssetCheckResult(passed=False, description=f"Month {month} has no final allocation.")
    final = exports.read_final(month).sort_values("request_id").reset_index(drop=True)
    approved = exports.read_version(month, row["final_version"]).sort_values("request_id").reset_index(drop=True)
    cols = [c for c in approved.columns if c not in ("version",)]
    same = final[cols].equals(approved[cols])
    return dg.AssetCheckResult(passed=bool(same), metadata={"approved_version": row["final_version"],
                                                            "rows": len(final)})


monthly_checks = [no_resource_over_capacity, no_ineligible_pair, must_allocate_requests_served,
                  final_allocation_matches_approved_version]
