"""A run's inputs resolved once: parameters, pins, exclusions, actor and note."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batch.params import max_parts, params_snapshot, solver_params
from solvers.schema import SolverParams


@dataclass(frozen=True)
class RunSnapshot:
    """What one run works from; taken at its first step, so later changes apply to the next run only."""

    month: str
    run_id: str
    actor: str | None
    note: str | None
    params: dict[str, Any] = field(default_factory=dict)
    pins: dict[str, str] = field(default_factory=dict)
    exclusions: frozenset[str] = frozenset()
    taken_at: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSnapshot:
        """The snapshot as the control store keeps it (JSON)."""
        return cls(month=data["month"], run_id=data["run_id"], actor=data.get("actor"),
                   note=data.get("note"), params=dict(data.get("params") or {}),
                   pins=dict(data.get("pins") or {}), exclusions=frozenset(data.get("exclusions") or ()),
                   taken_at=str(data.get("taken_at") or ""))

    def solver_params(self) -> SolverParams:
        """The solver's parameters: defaults overridden by what admins had set when the run began."""
        return solver_params(self.params)

    def max_parts(self, pairs: int | None = None) -> int:
        """Most steps the month's solve fans out to (by its eligible pairs unless admins set it)."""
        return max_parts(self.params, pairs)

    def params_record(self) -> dict[str, Any]:
        """The JSON-able parameters kept with the version this run writes."""
        return params_snapshot(self.solver_params())
