"""What the warm run workers' forkserver imports last (engine.run_launcher.PRELOAD): the code
location, the instance's storage modules, then one small month through the first calls that a run's
steps would otherwise pay in every worker forked from it.

A process forked from the server inherits all of it: the storage modules that opening the instance
imports (alembic, the SQLite and PostgreSQL storages: 0.2 s), the solver's compiled functions loaded
from numba's cache (0.3 s in the capacity plan, as much again in the solve), matplotlib's fonts and
great-expectations' registries. Nothing of the warm-up is kept: it works in a temporary folder and
leaves no connection, thread or file open, so the forks start clean. A warm-up that fails only costs
the workers that time again (it is logged, never raised: the server must start either way).
"""

from __future__ import annotations

import importlib
import logging
import tempfile
from pathlib import Path

import pandas as pd
import tqdm

import engine.definitions  # noqa: F401  (the code location the workers execute)
from batch import charts
from batch.demo_data import generate_month, write_landing
from batch.inputs import load_landing
from batch.plan import expected_allocation
from checks.expectations import validate_inputs
from engine.internals import PRELOADED_MODULES
from solvers import SolverParams, build_instance, solve

# Imported by DagsterInstance.from_ref / the run's first steps, not by importing Dagster itself.
STORAGE_MODULES = (*PRELOADED_MODULES, "dagster_postgres", "alembic.command", "pyarrow.dataset", "tabulate")
WARM_UP_MONTH = "2000-01"
logger = logging.getLogger(__name__)


def warm_up() -> None:
    """Import the storage modules; validate, plan and solve a small generated month; render each kind
    of chart once."""
    # great-expectations makes (disabled) tqdm bars, and tqdm's first bar starts a monitor thread that
    # would then run in the server at every fork: bars need no monitor here.
    tqdm.tqdm.monitor_interval = 0
    for name in STORAGE_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # dagster_postgres where the PostgreSQL extra is not installed
            continue
    with tempfile.TemporaryDirectory(prefix="batch_admin_warm_up_") as folder:
        home = Path(folder)
        write_landing(home, WARM_UP_MONTH, generate_month(WARM_UP_MONTH, requests=300, resources=24, seed=1))
        tables = load_landing(home, WARM_UP_MONTH)
        validate_inputs(tables, data_docs_dir=home / "data_docs")
        params = SolverParams(time_limit_s=1.0)
        instance = build_instance(WARM_UP_MONTH, tables.requests, tables.resources,
                                  availability=tables.availability, params=params)
        expected_allocation(instance, params)
        solve(instance, params)
    charts.utilization_heatmap(pd.DataFrame({"service": ["a", "a"], "region": ["x", "y"],
                                             "planned_units": [1.0, 2.0], "capacity": [2.0, 2.0]}))
    charts.reasons_bar({"no_capacity": 2}, 4)
    charts.trend_chart([{"month": "2000-01", "success_rate": 0.5, "utilization": 0.5},
                        {"month": "2000-02", "success_rate": 0.6, "utilization": 0.7}])


def warm_up_or_warn() -> bool:
    """warm_up(); a failure is logged, never raised (the server must start either way)."""
    try:
        warm_up()
    except Exception:  # noqa: BLE001
        logger.warning("The run workers' warm-up failed; runs start without it.", exc_info=True)
        return False
    return True


warm_up_or_warn()
