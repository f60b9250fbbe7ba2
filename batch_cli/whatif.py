"""`batch-admin whatif`: what a change would do to the latest version, without writing anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from batch.months import check_month

# Moves printed in the human answer (--json lists up to batch.whatif.MAX_LISTED_MOVES).
SHOWN_MOVES = 20


def whatif_command(settings: Callable[[], Any], exports: Callable[[], Any],
                   emit: Callable[[Any, bool, Callable[[], None]], None], out: Console) -> click.Command:
    """The command, given the CLI's settings, export store, output and printing (batch_cli/main.py)."""

    @click.command("whatif")
    @click.argument("month")
    @click.option("--capacity", "capacity", multiple=True, metavar="RES=+N", help="Change a resource's capacity.")
    @click.option("--pin", "pins", multiple=True, metavar="REQ=RES", help="Fix a request to a resource.")
    @click.option("--exclude", "exclusions", multiple=True, metavar="REQ", help="Remove a request.")
    @click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Set a batch parameter.")
    @click.option("--json", "as_json", is_flag=True)
    def whatif(month: str, capacity: tuple[str, ...], pins: tuple[str, ...], exclusions: tuple[str, ...],
               assignments: tuple[str, ...], as_json: bool) -> None:
        """Preview a change against the latest version (read-only: no version, audit entry or lock)."""
        check_month(month)
        # Deferred: start-up speed (pandas and the solver load only when a what-if runs).
        from batch.whatif import Change, what_if

        change = Change.parse(list(capacity), list(pins), list(exclusions), list(assignments))
        answer = what_if(settings().home, exports(), month, change)
        emit(answer, as_json, lambda: _print(out, answer))

    return whatif


def _print(out: Console, answer: dict[str, Any]) -> None:
    """Before and after side by side, then the moves and the groups whose shortage changes."""
    before, after = answer["before"], answer["after"]
    table = Table("", "before", "after", "change", title=f"What if, against {answer['month']} version "
                  f"{answer['version']} (nothing written)", title_justify="left")
    for key, label, fmt in (("objective", "objective", "{:,.0f}"), ("allocated", "allocated", "{:,}"),
                            ("success_rate", "success rate", "{:.1%}"), ("utilization", "utilization", "{:.1%}"),
                            ("capacity_units", "capacity units", "{:,}")):
        old, new = before.get(key), after.get(key)
        change = "" if old is None or new is None or old == new else fmt.replace("{:", "{:+").format(new - old)
        table.add_row(label, "" if old is None else fmt.format(old), "" if new is None else fmt.format(new), change)
    out.print(table)
    solved = answer.get("solved")
    if solved:
        out.print(f"re-solved {answer['parts']['re_solved']} of {answer['parts']['of']} independent parts "
                  f"({solved['requests']:,} requests): objective {solved['objective']:,.0f}, bound "
                  f"{solved['bound']:,.0f}, gap {solved['gap']:.3%} in {answer['seconds']['total']:.2f} s", markup=False)
    moves = answer["moves"]
    out.print(f"requests that would move: {moves['count']:,}", markup=False)
    for move in moves["list"][:SHOWN_MOVES]:
        out.print(f"  {move['request_id']}: {move['from'] or 'unallocated'} -> {move['to'] or 'unallocated'}",
                  markup=False)
    if moves["count"] > SHOWN_MOVES:
        out.print(f"  ... and {moves['count'] - SHOWN_MOVES:,} more (--json lists them)", markup=False)
    for group in answer["groups"]:
        out.print(f"shortage of {group['service']}/{group['region']}: {group['unallocated_before']:,} -> "
                  f"{group['unallocated_after']:,} unallocated requests", markup=False)
