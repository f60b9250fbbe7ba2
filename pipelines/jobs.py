"""Jobs admins launch: plan, execute, finalize and actuals (asset jobs) and unlock (an op job)."""

import dagster as dg

from assets.actuals import planned_vs_actual
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
from batch.lifecycle import unlock_month
from batch.roles import ACTOR_TAG, MONTH_TAG, RoleError, Roles
from resources.dagster_resources import AlertsResource, ControlStoreResource
from resources.settings import Settings

PLAN_JOB = "plan_job"
EXECUTE_JOB = "execute_job"
FINALIZE_JOB = "finalize_job"
UNLOCK_JOB = "unlock_job"
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
    description="Approve a version (config: version, approver) and set the final lock.")

actuals_job = dg.define_asset_job(
    ACTUALS_JOB, selection=[planned_vs_actual], config=_partitioned(),
    description="Compare a month's official (or latest) allocation with the actuals that landed.")


class UnlockConfig(dg.Config):
    """The month to unlock, why, and who approves it."""

    month: str
    reason: str
    approver: str


@dg.op
def unlock_finalized_month(context: dg.OpExecutionContext, config: UnlockConfig,
                           control: ControlStoreResource, alerts: AlertsResource) -> None:
    """Return a finalized month to proposed, audited, with an alert."""
    store = control.store()
    actor = context.run.tags.get(ACTOR_TAG)
    try:
        unlock_month(Roles.load(Settings.from_env().roles_file), store, config.month, actor,
                     config.approver, config.reason)
    except (ControlError, RoleError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    alerts.dispatcher(store).raise_alert(unlock_alert(config.month, actor, config.approver, config.reason))
    context.log.info(f"Month {config.month} unlocked and back to proposed.")


@dg.job(name=UNLOCK_JOB, description="Audited unlock of a finalized month (four eyes).")
def unlock_job():
    unlock_finalized_month()
