"""The capacity advice in the CLI's words (plan and status); docs/model.md explains it."""

from __future__ import annotations

from rich.console import Console

# batch.advice.ADVICE_KEY, named here so that the CLI starts without importing the solver.
ADVICE_KEY = "capacity_advice"


def print_advice(out: Console, lines: list[str] | None) -> None:
    """The advice lines under a heading; nothing when there are none."""
    if not lines:
        return
    out.print("[bold]Capacity advice[/bold] (where one more unit serves most):")
    for line in lines:
        out.print(f"  - {line}", markup=False)
