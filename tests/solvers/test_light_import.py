"""Importing the solver package or its schema loads no solver engine (the CLI imports the schema)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("ortools", "numba")


def loaded_after(statement: str) -> list[str]:
    """The heavy modules a fresh interpreter has loaded after running `statement`."""
    probe = f"import sys\n{statement}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    return eval(done.stdout.strip())  # noqa: S307 (our own probe's printed list)


def test_importing_the_schema_loads_neither_or_tools_nor_numba():
    assert loaded_after("import solvers, solvers.schema\nfrom solvers import SolverParams") == []


def test_importing_the_eligibility_rules_loads_neither_or_tools_nor_numba():
    assert loaded_after("import solvers.eligibility") == []


def test_the_schema_loads_no_pandas_either():  # the CLI's parameters import it
    assert subprocess.run([sys.executable, "-c", "import sys, solvers.schema; assert 'pandas' not in sys.modules"],
                          timeout=120).returncode == 0


def test_the_solver_is_still_one_import_away():
    assert loaded_after("from solvers import solve, build_instance, tabu") == ["numba", "ortools"]
