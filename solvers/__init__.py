"""Allocation solver of the monthly batch: instance building, CP-SAT model, validation (no Dagster)."""

from solvers.eligibility import build_instance
from solvers.model import InfeasibleError, NoSolutionError, solve
from solvers.schema import AllocationInstance, Proposal, SolverParams

__all__ = [
    "AllocationInstance",
    "InfeasibleError",
    "NoSolutionError",
    "Proposal",
    "SolverParams",
    "build_instance",
    "solve",
]
