"""Small PNG charts of a version (utilization, reasons, planned vs actual, trend, change): no Dagster.

Each chart is a few hundred pixels wide at 80 dpi and stays well under 100 kB, so that it can be
embedded in Dagster's Markdown metadata and in the HTML report as a data URI. Matplotlib's
object API (Figure + Agg canvas) is used directly: no pyplot, no global state, safe in threads.
The drawing is batch/charts_draw.py's, imported with the first chart drawn (`charts.reasons_bar` ...):
matplotlib's import (0.36 s) is not paid by the processes that draw none (the code location's jobs
other than the export, the CLI).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING

from solvers.lazy import lazy_attributes

if TYPE_CHECKING:
    from batch.charts_draw import change_chart, planned_vs_actual_chart, reasons_bar, trend_chart, utilization_heatmap

__all__ = ["Chart", "change_chart", "chart_path", "planned_vs_actual_chart", "reasons_bar", "trend_chart",
           "utilization_heatmap"]
# The drawing functions, imported from DRAWING_MODULE when first asked for.
DRAWING_MODULE = "batch.charts_draw"
DRAWN = ("change_chart", "planned_vs_actual_chart", "reasons_bar", "trend_chart", "utilization_heatmap")

DPI = 80
MAX_PNG_BYTES = 100_000
BLUE = "#1F4E78"
RED = "#C0504D"
GREEN = "#4F8A3C"
GREY = "#7F7F7F"


@dataclass(frozen=True)
class Chart:
    """A rendered chart: a name for files and metadata keys, a title people read, the PNG bytes."""

    name: str
    title: str
    png: bytes

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")

    def markdown(self, url: str | None = None) -> str:
        """The chart as a Markdown image with its title as alt text: embedded (a data URI), or at `url`
        where the same image is served (short enough for the Dagster UI to show inline; an embedded PNG
        makes the Markdown long, and the UI folds it behind "Show Markdown")."""
        return f"![{self.title}]({url or self.data_uri()})"


def chart_path(month: str, version: int, name: str) -> str:
    """Where the admin view serves a version's chart (batch_view/app.py routes)."""
    return f"/month/{month}/chart/{version}/{name}.png"


__getattr__ = lazy_attributes(__name__, dict.fromkeys(DRAWN, DRAWING_MODULE))
