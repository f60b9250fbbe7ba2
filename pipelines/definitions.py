"""The one Definitions object that workspace.yaml and the CLI load."""

from __future__ import annotations

import dagster as dg

from assets.actuals import actuals_assets
from assets.monthly import monthly_assets
from pipelines.jobs import execute_job, finalize_job, plan_job, unlock_job
from pipelines.schedules import next_month_planning
from resources.dagster_resources import AlertsResource, ControlStoreResource, StorageResource


def _sensors() -> list:
    from pipelines.sensors import all_sensors

    return all_sensors()


defs = dg.Definitions(
    assets=[*monthly_assets, *actuals_assets],
    jobs=[plan_job, execute_job, finalize_job, unlock_job],
    schedules=[next_month_planning],
    sensors=_sensors(),
    resources={
        "control": ControlStoreResource(),
        "storage": StorageResource(),
        "alerts": AlertsResource(),
    },
)
