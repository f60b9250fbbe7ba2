"""The opted-in Definitions (workspace.yaml, deploy/): the product's assets, jobs, schedules, sensors and
resources as pipelines/definitions.py has them, executed by the engine's executor (Celery when configured),
whose forked steps preload this module. The code location keeps its name, `monthly_batch_admin`."""

from __future__ import annotations

from engine.executor import engine_executor
from pipelines.definitions import definitions, forked_from

defs = definitions(engine_executor.configured(forked_from("engine.definitions")))
