"""Planned vs actual: the month's official (or latest) allocation against what was really delivered."""

import dagster as dg
import pandas as pd

from assets.guards import refuse
from assets.monthly import GROUP, allocation_export
from assets.partitions import monthly_partitions
from batch.health import actuals_summary, planned_rows
from batch.inputs import InputError, load_landing
from batch.metrics import planned_vs_actual as compare
from resources.dagster_resources import ControlStoreResource, StorageResource

ACTUALS_JOB = "actuals_job"
TABLE_ROWS_SHOWN = 200


@dg.asset(partitions_def=monthly_partitions, group_name=GROUP,
          deps=[allocation_export])
def planned_vs_actual(context: dg.AssetExecutionContext, control: ControlStoreResource,
                      storage: StorageResource) -> dg.Output[pd.DataFrame]:
    """Per resource: planned and delivered units and utilization of the month."""
    month = context.partition_key
    planned = planned_rows(control.store(), storage.exports(), month)
    if planned is None:
        raise refuse(f"Month {month} has no allocation version to compare with actuals; run the month first.")
    try:
        tables = load_landing(storage.home_path(), month)
    except InputError as exc:
        raise refuse(str(exc)) from None
    table = compare(planned.rows, tables.resources, tables.actuals)
    summary = actuals_summary(table)
    if not summary["actuals_landed"]:
        context.log.warning(f"No actuals have landed for {month} yet: only planned figures are shown.")
    return dg.Output(table, metadata={
        "version": planned.version,
        "final": planned.final,
        **{key: value for key, value in summary.items() if value is not None},
        "planned_vs_actual": dg.MetadataValue.md(_markdown(table)),
    })


def _markdown(table: pd.DataFrame) -> str:
    # Largest deviations first: that is what a reader looks for.
    shown = table.reindex(table["delta"].abs().sort_values(ascending=False, kind="stable").index)
    text = shown.head(TABLE_ROWS_SHOWN).to_markdown(index=False, floatfmt=".3f")
    if len(table) > TABLE_ROWS_SHOWN:
        text += f"\n\n{len(table) - TABLE_ROWS_SHOWN} more resources not shown."
    return text


actuals_assets = [planned_vs_actual]
