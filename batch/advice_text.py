"""Capacity advice in words, from the record a version's manifest or a plan's summary keeps (batch.advice makes it).

Plain Python, no pandas or solver: `batch-admin status` prints these lines and must start fast.
"""

from __future__ import annotations

import html
from typing import Any

# Key of the advice in a version's manifest metrics and in a plan's summary.
ADVICE_KEY = "capacity_advice"


def advice_lines(record: dict[str, Any] | None, count: int | None = None) -> list[str]:
    """The advice as lines a manager reads (top places, the first `count` or all the record keeps, then idle
    resources)."""
    if not record or not record.get("available"):
        return []
    lines = [place["sentence"] for place in record.get("top", [])[:count]]
    if not lines:
        lines.append("no resource is short: one more unit anywhere would serve nothing that waits")
    waiting = record.get("groups") or []
    if waiting:
        lines.append("most value waiting: " + ", ".join(
            f"{str(g['service']).title()} {str(g['region']).title()} ({g['unallocated_requests']:,} requests, "
            f"{g['unallocated_value']:,} value)" for g in waiting))
    idle = record.get("idle") or []
    if idle:
        lines.append("idle: " + ", ".join(f"{row['resource_id']} ({row['idle_units']:,} of {row['capacity']:,} units)"
                                          for row in idle[:5]))
    return lines


def advice_markdown(record: dict[str, Any] | None) -> str:
    """The advice as Markdown (Dagster metadata and the report's Markdown sections)."""
    lines = advice_lines(record)
    return "\n".join(f"- {line}" for line in lines) if lines else "no capacity advice (its LP was not solved)"


def advice_html(record: dict[str, Any] | None) -> str:
    """The report's section: where more capacity serves most, in sentences, then the idle resources."""
    lines = advice_lines(record)
    if not lines:
        return "<h2>Where more capacity would serve most</h2><p>No capacity advice for this version.</p>"
    return ("<h2>Where more capacity would serve most</h2><p>From the shadow prices of the LP relaxation "
            "(docs/model.md, Capacity advice): the value one more unit would serve, and for how many units.</p><ul>"
            + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>")
