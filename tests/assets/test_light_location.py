"""The code location loads neither the solver's engines nor matplotlib: the jobs that solve or draw nothing
(the plan, and every command that loads the location to create its run) do not pay for them, and the steps
that solve or draw still find them one import away."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("matplotlib", "ortools", "great_expectations")


def loaded_after(statement: str) -> list[str]:
    """The heavy modules a fresh interpreter has loaded after running `statement`."""
    probe = f"import sys\n{statement}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300)
    return eval(done.stdout.strip().splitlines()[-1])  # noqa: S307 (our own probe's printed list)


def test_the_code_location_loads_neither_or_tools_nor_matplotlib_nor_great_expectations():
    assert loaded_after("import engine.definitions") == []


def test_the_solve_and_the_charts_are_still_one_attribute_away():
    statement = ("import engine.definitions, solvers\nfrom batch import charts\n"
                 "solvers.solve, solvers.split_instance, charts.reasons_bar")
    assert loaded_after(statement) == ["matplotlib", "ortools"]


def test_the_forkserver_of_forked_steps_preloads_them():
    from pipelines.definitions import forked_from

    preloaded = forked_from("engine.definitions")["start_method"]["forkserver"]["preload_modules"]
    statement = "import importlib\n" + "\n".join(f"importlib.import_module({name!r})" for name in preloaded)
    assert loaded_after(statement) == ["matplotlib", "ortools"]
