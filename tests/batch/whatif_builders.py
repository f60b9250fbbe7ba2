"""A month with one version written straight through the export store (no Dagster), for what-if tests and benches."""

from __future__ import annotations

from pathlib import Path

from batch.demo_data import generate_month, write_landing
from batch.inputs import load_landing
from batch.params import params_snapshot
from batch.plan import allocation_rows
from resources.storage import ExportStore
from solvers import SolverParams, build_instance, solve


def month_with_version(home: Path, month: str, requests: int, resources: int, params: SolverParams,
                       seed: int = 7) -> ExportStore:
    """Land a demo month under `home`, solve it and write the result as version 1."""
    write_landing(home, month, generate_month(month, requests=requests, resources=resources, seed=seed))
    tables = load_landing(home, month)
    instance = build_instance(month, tables.requests, tables.resources, availability=tables.availability,
                              eligibility=tables.eligibility, params=params)
    proposal = solve(instance, params)
    exports = ExportStore(home)
    exports.write_version(month, 1, allocation_rows(month, 1, instance, proposal), {
        "parameters": params_snapshot(params), "input_fingerprint": tables.fingerprint, "status": "proposed",
        "solver": {"objective": proposal.objective, "bound": proposal.bound}})
    return exports
