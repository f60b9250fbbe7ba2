"""Jobs admins launch: plan, execute, finalize and actuals (asset jobs) and unlock (an op job)."""

import dagster as dg

from assets.actuals import planned_vs_actual
from assets.guards import claim_request
from assets.monthly import (
    allocation_export,
    allocation_parts,
    allocation_proposal,
    capacity_plan,
    final_allocation,
    landed_inputs,
    validated_inputs,
)
from assets.partitions import monthly_partitions
from batch.alert_rules import unlock_alert
from batch.errors import ControlError
from batch.identity import IdentityError
from batch.lifecycle import EXECUTE_JOB, FINALIZE_JOB, PLAN_JOB, UNLOCK_JOB, carry_out_unlock
from batch.report import refresh_standing
from batch.roles import MONTH_TAG, RoleError
from batch.standing import withdrawals
from resources.dagster_resources import AlertsResource, ControlStoreResource, StorageResource

__all__ = ["ACTUALS_JOB", "EXECUTE_JOB", "FINALIZE_JOB", "PLAN_JOB", "UNLOCK_JOB"]
ACTUALS_JOB = "actuals_job"


def month_tags(partition_key: str) -> dict[str, str]:
    """Our own month tag, present on every run of a month (the run queue limits on it)."""
    return {MONTH_TAG: partition_key}


def _partitioned() -> dg.PartitionedConfig:
    return dg.PartitionedConfig(partitions_def=monthly_partitions,
                                run_config_for_partition_key_fn=lambda _key: {},
                                tags_for_partition_key_fn=month_tags)


plan_job = dg.define_asset_job(
    PLAN_JOB, selection=[landed_inputs, validated_inputs, capacity_plan],
    config=_partitioned(),
    description="Preview a month: load and validate inputs, capacity plan and conflicts.")

execute_job = dg.define_asset_job(
    EXECUTE_JOB,
    selection=[landed_inputs, validated_inputs, capacity_plan, allocation_parts, allocation_proposal,
               allocation_export],
    config=_partitioned(),
    description="Run the month: plan, solve, check and write a new version.")

finalize_job = dg.define_asset_job(
    FINALIZE_JOB, selection=[final_allocation],
    description="Carry out an approved finalize request (config: request_id): the official copy, then the "
                "final lock.")

actuals_job = dg.define_asset_job(
    ACTUALS_JOB, selection=[planned_vs_actual], config=_partitioned(),
    description="Compare a month's official (or latest) allocation with the actuals that landed.")


class UnlockConfig(dg.Config):
    """The approved unlock request to carry out (`batch-admin approve ID` makes one)."""

    request_id: str


@dg.op
def unlock_finalized_month(context: dg.OpExecutionContext, config: UnlockConfig, control: ControlStoreResource,
                           storage: StorageResource, alerts: AlertsResource) -> None:
    """Return a finalized month to proposed as approved, audited, with an alert; its official copy is withdrawn."""
    store = control.store()
    exports = storage.exports()
    try:
        request = store.request(config.request_id)
        claim_request(context, store, request.id, str(request.month))
        done = carry_out_unlock(store, exports, request.id, str(request.month), context.run.run_id)
    except (ControlError, RoleError, IdentityError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    refresh_standing(store, exports, str(done.month))
    context.log_event(withdrawn_final_materialization(store, str(done.month), done))
    alerts.dispatcher(store).raise_alert(unlock_alert(str(done.month), done.requested_by, str(done.decided_by),
                                                      done.text))
    context.log.info(f"Month {done.month} unlocked and back to proposed (request {done.id}).")


def withdrawn_final_materialization(store, month: str, unlock) -> dg.AssetMaterialization:
    """The final allocation of a month after an unlock: no official copy; the withdrawn version, when and by whom."""
    withdrawn = [w for w in withdrawals(store.requests(month)) if w.unlock_request == unlock.id]
    sentence = (f"Withdrawn: {withdrawn[0].sentence()}. No version is final now." if withdrawn
                else f"Withdrawn by unlock request {unlock.id}. No version is final now.")
    return dg.AssetMaterialization(asset_key="final_allocation", partition=month, description=sentence, metadata={
        "standing": dg.MetadataValue.md(sentence), "status": "withdrawn",
        "withdrawn version": int(unlock.binding.get("final_version") or 0), "unlock request": unlock.id,
        "requested by": unlock.requested_by, "approved by": str(unlock.decided_by), "reason": unlock.text})


@dg.job(name=UNLOCK_JOB, description="Audited unlock of a finalized month (four eyes).")
def unlock_job():
    unlock_finalized_month()
