"""Jobs admins launch: plan, execute, finalize (asset jobs) and unlock (an op job)."""


import dagster as dg

from assets.monthly import (
    allocation_export, allocation_parts, allocation_proposal, capacity_plan, final_allocation, landed_inputs,
    validated_inputs,
)
from assets.partitions import monthly_partitions
from pipelines.lifecycle import unlock_month
from pipelines.roles import ACTOR_TAG, MONTH_TAG
from resources.dagster_resources import AlertsResource, ControlStoreResource

PLAN_JOB = "plan_job"
EXECUTE_JOB = "execute_job"
FINALIZE_JOB = "finalize_job"
UNLOCK_JOB = "unlock_job"


def month_tags(partition_key: str) -> dict[str, str]:
    """Our own month tag, present on every run of a month (the run queue limits on it)."""
    return {MONTH_TAG: partition_key}


def _partitioned(run_config: dict | None = None) -> dg.PartitionedConfig:
    return dg.PartitionedConfig(partitions_def=monthly_partitions,
                                run_config_for_partition_key_fn=lambda _key: run_config or {},
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


class UnlockConfig(dg.Config):
    """The month to unlock, why, and who approves it."""

    month: str
    reason: str
    approver: str


@dg.op
def unlock_finalized_month(context: dg.OpExecutionContext, config: UnlockConfig,
                           control: ControlStoreResource, alerts: AlertsResource) -> None:
    """Return a finalized month to proposed, audited, with an alert."""
    from checks.alert_rules import unlock_alert

    store = control.store()

    def raise_alert(month: str, actor: str | None, approver: str, reason: str) -> None:
        alerts.dispatcher(store).raise_alert(unlock_alert(month, actor, approver, reason))

    unlock_month(store, config.month, context.run.tags.get(ACTOR_TAG), config.approver,
                 config.reason, alert=raise_alert)
    context.log.info(f"Month {config.month} unlocked and back to proposed.")


@dg.job(name=UNLOCK_JOB, description="Audited unlock of a finalized month (four eyes).")
def unlock_job():
    unlock_finalized_month()
