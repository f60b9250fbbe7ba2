"""The product's Definitions on Dagster's public API (`dagster dev -m pipelines`); the opted-in one that
workspace.yaml loads is engine/definitions.py, made by the same `definitions()`."""

from __future__ import annotations

import dagster as dg

from assets.actuals import actuals_assets
from assets.monthly import monthly_assets
from batch.charts import DRAWING_MODULE
from pipelines.environment import setting
from pipelines.executor import batch_admin_executor
from pipelines.jobs import actuals_job, execute_job, finalize_job, plan_job, unlock_job
from pipelines.schedules import next_month_planning
from pipelines.sensors import all_sensors
from resources.dagster_resources import AlertsResource, ControlStoreResource, StorageResource
from resources.io_manager import ParquetIOManagerResource
from resources.settings import CONTROL_VAR, HOME_VAR, IO_BASE_VAR, ROLES_VAR
from solvers import SOLVING_MODULES


def forked_from(module: str) -> dict:
    """The executor's config: multiprocess steps (when chosen) fork from a server that has imported
    `module` (the code location) once, and the solver and the charts, which the location imports on first use,
    so a step starts in a fraction of a second instead of importing Dagster, pandas and OR-Tools again
    (seconds per step)."""
    return {"start_method": {"forkserver": {"preload_modules": [module, *SOLVING_MODULES, DRAWING_MODULE]}}}


def definitions(executor: dg.ExecutorDefinition) -> dg.Definitions:
    """The product's assets, jobs, schedules, sensors and resources, executed by `executor`."""
    return dg.Definitions(
        assets=[*monthly_assets, *actuals_assets],
        jobs=[plan_job, execute_job, finalize_job, unlock_job, actuals_job],
        schedules=[next_month_planning],
        sensors=all_sensors(),
        executor=executor,
        resources={
            "control": ControlStoreResource(url=setting(CONTROL_VAR), roles_file=setting(ROLES_VAR),
                                            home=setting(HOME_VAR)),
            "storage": StorageResource(home=setting(HOME_VAR)),
            "alerts": AlertsResource(),
            "io_manager": ParquetIOManagerResource(base_url=setting(IO_BASE_VAR)),
        },
    )


defs = definitions(batch_admin_executor.configured(forked_from("pipelines.definitions")))
