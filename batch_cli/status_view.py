"""The parameters, pins and exclusions of a month as `batch-admin status` prints them."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from batch.times import local


def print_settings(console: Console, result: dict[str, Any]) -> None:
    """The month's parameters, pins and exclusions, each with who set it, when and (for adjustments) why."""
    settings = result.get("params_set") or []
    if settings:
        table = Table("parameter", "value", "set by", "at", title="Parameters (others at their defaults)",
                      title_justify="left")
        for s in settings:
            table.add_row(s["key"], str(s["value"]), s["actor"] or "?", local(s["at"]))
        console.print(table)
    else:
        console.print("parameters: every one at its default")
    adjustments = result.get("adjustments") or {}
    rows = [("pinned to " + str(a["resource_id"]), a) for a in adjustments.get("pins") or []]
    rows += [("excluded", a) for a in adjustments.get("exclusions") or []]
    if not rows:
        console.print("pins and exclusions: none")
        return
    table = Table("request", "adjustment", "set by", "at", "note", title="Pins and exclusions for the next run",
                  title_justify="left")
    for what, a in rows:
        table.add_row(a["request_id"], what, a["actor"], local(a["at"]), a["note"])
    console.print(table)
