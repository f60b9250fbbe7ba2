"""What a command's own run worker imports before its run starts: what the job's steps use and the code location
does not load (the validation's great-expectations, the solver, matplotlib), only for the jobs whose steps use it."""

from __future__ import annotations

import importlib

from batch_cli.instance import instance
from batch_cli.local_runs import WARM_MODULES, LocalLocation, warm_modules
from pipelines.jobs import ACTUALS_JOB, EXECUTE_JOB, FINALIZE_JOB, PLAN_JOB, UNLOCK_JOB

VALIDATION, SOLVER, CHARTS = "checks.expectations", "solvers.model", "batch.charts_draw"


def test_each_jobs_worker_imports_what_its_steps_use_and_nothing_else(home):
    location = LocalLocation(instance())
    extra = {job: set(warm_modules(location.job(job))) - set(WARM_MODULES)
             for job in (PLAN_JOB, EXECUTE_JOB, FINALIZE_JOB, UNLOCK_JOB, ACTUALS_JOB)}
    assert extra[PLAN_JOB] == {VALIDATION}  # the preview draws and solves nothing
    assert {VALIDATION, SOLVER, "solvers.decompose", CHARTS} <= extra[EXECUTE_JOB]
    assert extra[FINALIZE_JOB] == extra[UNLOCK_JOB] == {CHARTS}  # the reports they rewrite hold the charts
    assert extra[ACTUALS_JOB] == set()
    for name in set().union(*extra.values()):
        importlib.import_module(name)  # every name is a module
