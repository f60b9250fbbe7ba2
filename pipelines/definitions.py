"""The one Definitions object that workspace.yaml loads."""

from __future__ import annotations

import dagster as dg

from assets.actuals import actuals_assets
from assets.monthly import monthly_assets
from pipelines.environment import setting
from pipelines.executor import batch_admin_executor
from pipelines.jobs import actuals_job, execute_job, finalize_job, plan_job, unlock_job
from pipelines.schedules import next_month_planning
from pipelines.sensors import all_sensors
from resources.dagster_resources import AlertsResource, ControlStoreResource, StorageResource
from resources.io_manager import ParquetIOManagerResource
from resources.settings import CONTROL_VAR, HOME_VAR, IO_BASE_VAR, ROLES_VAR

# Multiprocess (the default; BATCH_ADMIN_EXECUTOR=celery picks Celery when a run starts): steps fork
# from a server that has imported the product once, so a step starts in a fraction of a second
# instead of importing Dagster, pandas and OR-Tools again (seconds per step).
executor = batch_admin_executor.configured(
    {"start_method": {"forkserver": {"preload_modules": ["pipelines.definitions"]}}})

defs = dg.Definitions(
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
