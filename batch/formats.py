"""How each figure reads wherever it is shown (the CLI, Dagster metadata, the report, the workbook, the view).

Plain Python, no pandas: the CLI's status and run print with these and must start fast.
"""

from __future__ import annotations

import math
from typing import Any

PERCENT_FIELDS = frozenset({"success_rate", "unallocated_ratio", "utilization", "planned_utilization",
                            "actual_utilization"})
GAP_DIGITS = 3  # a gap of 2e-5 reads 0.002 %, never 0.0000
HEADLINE = (
    ("requests", "Requests"), ("allocated", "Allocated (incl. pinned)"), ("pinned", "Pinned"),
    ("unallocated", "Unallocated"), ("excluded", "Excluded"), ("success_rate", "Success rate"),
    ("requested_units", "Requested units"), ("allocated_units", "Allocated units"),
    ("capacity_units", "Capacity units"), ("utilization", "Utilization"), ("objective", "Objective"),
    ("bound", "Bound"), ("gap", "Gap"),
)
# Excel number formats of the same figures.
XLSX_PERCENT = "0.0%"
XLSX_GAP = "0.000%"
XLSX_COUNT = "#,##0"
XLSX_DECIMAL = "#,##0.00"


def format_count(value: Any) -> str:
    """Thousands separated, no decimals: 10,486."""
    return "–" if _missing(value) else f"{round(float(value)):,}"


def format_percent(value: Any, digits: int = 1) -> str:
    """A ratio as a percentage: 0.6207 -> 62.1%."""
    return "–" if _missing(value) else f"{float(value):.{digits}%}"


def format_gap(value: Any) -> str:
    """The relative gap as a percentage with GAP_DIGITS decimals: 2e-5 -> 0.002%."""
    return format_percent(value, GAP_DIGITS)


def format_seconds(value: Any) -> str:
    return "–" if _missing(value) else f"{float(value):,.1f} s"


def format_figure(name: str, value: Any) -> str:
    """One figure as people read it, by its name: percentages, the gap, counts, seconds."""
    if name == "gap":
        return format_gap(value)
    if name in PERCENT_FIELDS or name.endswith(("_rate", "_ratio", "_utilization")):
        return format_percent(value)
    if name.endswith("_seconds"):
        return format_seconds(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or _missing(value):
        return "–" if value is None else str(value)
    if float(value).is_integer() or abs(float(value)) >= 100:
        return format_count(value)
    return f"{float(value):,.2f}"


def format_change(name: str, change: Any) -> str:
    """A metric's change with its sign: percentage points for ratios, else the figure's own format."""
    if _missing(change):
        return "–"
    value = float(change)
    if value == 0:
        return "0"
    sign = "+" if value > 0 else "-"
    if name == "gap" or name in PERCENT_FIELDS or name.endswith(("_rate", "_ratio", "_utilization")):
        digits = GAP_DIGITS if name == "gap" else 1
        return f"{sign}{abs(value) * 100:.{digits}f} pp"
    return sign + format_figure(name, abs(value))


def headline(figures: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, formatted value) of the headline figures present in `figures`, in reading order."""
    return [(label, format_figure(key, figures.get(key))) for key, label in HEADLINE if key in figures]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))
