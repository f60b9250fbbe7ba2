"""What `batch-admin --help` and `status` import: the libraries that take most of a start-up (docs/performance.md,
CLI start-up) stay out unless the command needs them."""

from __future__ import annotations

import os
import subprocess
import sys

from resources.control_store import ControlStore
from tests.batch.test_health import record, store_figures
from tests.cli.test_failures import PROBE
from tests.pipelines.test_sensors import MONTH, land, write_version

# pandas, pyarrow, DuckDB, Dagster and the solver's engines: each takes 0.1 s to seconds to import.
HEAVY = ("pandas", "numpy", "pyarrow", "duckdb", "dagster", "ortools", "numba", "xlsxwriter")


def loaded(home, *args: str) -> str:
    """The last line of the probe: the command's exit code and the heavy libraries it imported."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=(*HEAVY, "sqlalchemy")), *args],
                          capture_output=True, text=True, env={**os.environ, "BATCH_ADMIN_HOME": str(home)}, timeout=120)
    return done.stdout.strip().splitlines()[-1]


def test_help_imports_neither_the_tables_nor_the_store(tmp_path):
    assert loaded(tmp_path, "--help") == "EXIT 0 []"


def month_with_a_version(home) -> None:
    """The month landed (without actuals) and its version 1 written and recorded."""
    land(home, actuals=False)
    write_version(home)
    store = ControlStore(f"sqlite:///{home.resolve()}/control.db")
    record(store, MONTH, 1)
    store.dispose()


def test_status_of_a_version_with_stored_figures_reads_no_table(tmp_path):
    month_with_a_version(tmp_path)
    store_figures(tmp_path)

    assert loaded(tmp_path, "status", MONTH) == "EXIT 0 ['sqlalchemy']"  # the control store's
    assert loaded(tmp_path, "status") == "EXIT 0 ['sqlalchemy']"


def test_status_computes_the_figures_when_none_are_stored(tmp_path):
    month_with_a_version(tmp_path)

    assert "pandas" in loaded(tmp_path, "status", MONTH)
