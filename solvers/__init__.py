"""Allocation solver of the monthly batch: instance building, CP-SAT model, validation (no Dagster)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from solvers.lazy import lazy_attributes

if TYPE_CHECKING:
    from solvers.decompose import merge_proposals, split_instance
    from solvers.eligibility import build_instance
    from solvers.feasibility import InfeasibleError, NoSolutionError
    from solvers.model import solve
    from solvers.schema import AllocationInstance, Proposal, SolverParams

__all__ = [
    "AllocationInstance",
    "InfeasibleError",
    "NoSolutionError",
    "Proposal",
    "SolverParams",
    "build_instance",
    "merge_proposals",
    "solve",
    "split_instance",
]

# Loaded on first use: `import solvers.schema` (the CLI, the control store) must not pay for OR-Tools
# and numba (about 2 s), which only solving needs; nor the code location, whose jobs other than the run
# solve nothing (the solve and its split: OR-Tools and SciPy, 0.5 s).
_HOMES = {"build_instance": "solvers.eligibility", "InfeasibleError": "solvers.feasibility",
          "NoSolutionError": "solvers.feasibility", "solve": "solvers.model", "AllocationInstance": "solvers.schema",
          "Proposal": "solvers.schema", "SolverParams": "solvers.schema", "split_instance": "solvers.decompose",
          "merge_proposals": "solvers.decompose"}
# What solving imports (the solve, the split and merge of a month's parts): a process about to solve may
# import them ahead (a run worker while its run is created, a forkserver before it forks the steps).
SOLVING_MODULES = ("solvers.model", "solvers.decompose")


__getattr__ = lazy_attributes(__name__, _HOMES)
