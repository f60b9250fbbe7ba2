"""The one place the CLI prints: its two consoles, JSON or human output, tables and label/value lists."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from batch.times import json_default

if TYPE_CHECKING:
    from batch.actions import Outcome

# Piped output (CI logs, files) gets wide tables instead of rich's 80-column default.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    """`data` as indented, sorted JSON on stdout with --json; else the command's human output."""
    if as_json:
        print_json(data)
    else:
        human()


def print_json(data: Any, sort_keys: bool = True) -> None:
    """Indented JSON on stdout; times as ISO 8601 with their zone (batch.times)."""
    click.echo(json.dumps(data, indent=2, default=json_default, sort_keys=sort_keys))


def print_table(columns: Sequence[str], rows: Iterable[Sequence[str]], **options: Any) -> None:
    """A table of already formatted cells, one row per item; `options` go to rich's Table (title...)."""
    table = Table(*columns, **options)
    for row in rows:
        table.add_row(*row)
    out.print(table)


def print_pairs(title: str, pairs: Mapping[str, Any], aligned: bool = False) -> None:
    """Label and value, one per line, under a title; `aligned`: bold labels, values to the right."""
    table = Table(title=title, show_header=False, title_justify="left")
    if aligned:
        table.add_column(style="bold")
        table.add_column(justify="right")
    for key, value in pairs.items():
        if isinstance(value, float):
            value = f"{value:,.4f}" if abs(value) < 10 else f"{value:,.1f}"
        table.add_row(str(key), str(value))
    out.print(table)


def pct(value: Any, digits: int = 1) -> str:
    return "" if value is None else f"{float(value):.{digits}%}"


def print_advice(lines: list[str] | None) -> None:
    """The capacity advice lines under a heading (plan and status; docs/model.md); nothing when there are none."""
    if not lines:
        return
    out.print("[bold]Capacity advice[/bold] (where one more unit serves most):")
    for line in lines:
        out.print(f"  - {line}", markup=False)


def version_summary(version: dict[str, Any]) -> dict[str, Any]:
    """A version as `run --json` and `status --json` give it: the headline figures beside all metrics."""
    metrics = version["metrics"]
    return {
        "version": version["version"], "created_at": version["created_at"], "actor": version["actor"],
        "note": version["note"], "status": version["status"], "export_path": version["export_path"],
        "requests": metrics.get("requests"), "allocated": metrics.get("allocated"),
        "success_rate": metrics.get("success_rate"), "objective": metrics.get("objective"),
        "bound": metrics.get("bound"), "gap": metrics.get("gap"),
        "solve_seconds": metrics.get("solve_seconds"), "stop_reason": metrics.get("stop_reason"),
        "churn": metrics.get("churn"), "metrics": metrics,
    }


def print_filed(outcome: Outcome, as_json: bool) -> None:
    """A request just filed (finalize, unlock, roles): its record as JSON, else the action's sentence."""
    assert outcome.request is not None
    emit(outcome.request.to_dict(datetime.now(UTC)), as_json, lambda: out.print(outcome.message, markup=False))
