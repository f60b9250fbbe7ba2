"""The drawing of batch/charts.py's charts with matplotlib (imported with the first chart drawn)."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

from batch.charts import BLUE, DPI, GREEN, GREY, MAX_PNG_BYTES, RED, Chart

# Empty to full in blues (darker is fuller); above 100 % of capacity, red.
UTILIZATION_COLORS = LinearSegmentedColormap.from_list("utilization", ["#F7FBFF", "#9DC3E6", BLUE]).with_extremes(
    over=RED, bad="#FFFFFF")


def utilization_heatmap(table: pd.DataFrame) -> Chart | None:
    """Planned utilization per service (rows) and region (columns), from utilization_table(by="service_region")."""
    if table.empty:
        return None
    grid = table.pivot_table(index="service", columns="region", values=["planned_units", "capacity"],
                             aggfunc="sum", sort=True)
    planned, capacity = grid["planned_units"], grid["capacity"]
    ratio = (planned / capacity.where(capacity != 0)).to_numpy(dtype=float)
    services, regions = list(planned.index), list(planned.columns)
    fig = _figure(max(5.0, 0.8 * len(regions) + 2.6), max(2.6, 0.45 * len(services) + 1.4))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(ratio), cmap=UTILIZATION_COLORS, vmin=0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(regions)), [str(r) for r in regions], rotation=30, ha="right")
    ax.set_yticks(range(len(services)), [str(s) for s in services])
    for i in range(len(services)):
        for j in range(len(regions)):
            value = ratio[i, j]
            if math.isfinite(value):
                ax.text(j, i, f"{value:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if value >= 0.75 else "black")
            elif capacity.iat[i, j] == 0 and planned.iat[i, j] == 0 and not np.isnan(capacity.iat[i, j]):
                ax.text(j, i, "no cap.", ha="center", va="center", fontsize=7, color=GREY)
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, extend="max")
    bar.ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_title("Planned utilization by service and region", fontsize=10)
    return _render("utilization_heatmap", "Planned utilization by service and region", fig)


def reasons_bar(by_reason: Mapping[str, int], requests: int | None = None) -> Chart | None:
    """Requests left out (unallocated or excluded) per reason, the largest on top."""
    if not by_reason:
        return None
    items = sorted(by_reason.items(), key=lambda item: (item[1], item[0]))
    fig = _figure(5.6, max(1.8, 0.36 * len(items) + 1.0))
    ax = fig.add_subplot()
    bars = ax.barh([_label(k) for k, _ in items], [v for _, v in items], color=RED)
    total = requests or 0
    ax.bar_label(bars, labels=[f"{v:,}" + (f" ({v / total:.1%})" if total else "") for _, v in items],
                 padding=3, fontsize=8)
    ax.set_xlim(0, max(v for _, v in items) * 1.35)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.set_title("Requests not allocated, by reason", fontsize=10)
    _tidy(ax)
    return _render("unallocated_by_reason", "Requests not allocated, by reason", fig)


def planned_vs_actual_chart(table: pd.DataFrame) -> Chart | None:
    """Planned against actual units per service (bars), from planned_vs_actual(); None before actuals land."""
    if table.empty or table["actual_units"].isna().all():
        return None
    per_service = (table.assign(service=table["service"].fillna("(unknown)"))
                   .groupby("service", sort=True)[["planned_units", "actual_units"]].sum())
    x = np.arange(len(per_service))
    fig = _figure(max(4.5, 0.9 * len(per_service) + 2), 2.8)
    ax = fig.add_subplot()
    ax.bar(x - 0.2, per_service["planned_units"], width=0.4, label="planned", color=BLUE)
    ax.bar(x + 0.2, per_service["actual_units"], width=0.4, label="actual", color=GREEN)
    ax.set_xticks(x, [str(s) for s in per_service.index], rotation=20, ha="right")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.legend(fontsize=8, frameon=False)
    ax.set_title("Planned vs actual units, by service", fontsize=10)
    _tidy(ax)
    return _render("planned_vs_actual", "Planned vs actual units, by service", fig)


def trend_chart(history: Sequence[Mapping[str, Any]]) -> Chart | None:
    """Success rate and utilization of the last months (one point per month), when there are two or more."""
    points = [h for h in history if h.get("success_rate") is not None or h.get("utilization") is not None]
    if len(points) < 2:
        return None
    months = [str(h["month"]) for h in points]
    fig = _figure(5.6, 2.6)
    ax = fig.add_subplot()
    for key, label, color in (("success_rate", "success rate", BLUE), ("utilization", "utilization", GREEN)):
        values = [np.nan if h.get(key) is None else float(h[key]) for h in points]
        ax.plot(months, values, marker="o", label=label, color=color)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, frameon=False, loc="lower left")
    ax.set_title("Success rate and utilization, last months", fontsize=10)
    _tidy(ax)
    return _render("trend", "Success rate and utilization, last months", fig)


def change_chart(diff: Mapping[str, Any]) -> Chart | None:
    """What changed from the previous version: requests added, removed, moved, unchanged."""
    counts = diff.get("counts") or {}
    if not counts:
        return None
    keys = [k for k in ("added", "removed", "moved", "unchanged") if k in counts]
    colors = {"added": GREEN, "removed": RED, "moved": "#E38B2C", "unchanged": GREY}
    fig = _figure(5.6, 1.9)
    ax = fig.add_subplot()
    bars = ax.barh(keys[::-1], [counts[k] for k in keys[::-1]], color=[colors[k] for k in keys[::-1]])
    ax.bar_label(bars, labels=[f"{counts[k]:,}" for k in keys[::-1]], padding=3, fontsize=8)
    ax.set_xlim(0, max(max(counts[k] for k in keys), 1) * 1.2)
    ax.set_title(f"Allocations, version {diff.get('from')} -> {diff.get('to')}", fontsize=10)
    _tidy(ax)
    return _render("change_from_previous", f"Change from version {diff.get('from')}", fig)


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _tidy(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8)


def _label(reason: str) -> str:
    return str(reason).replace("_", " ")


def _render(name: str, title: str, fig: Figure) -> Chart:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    png = buffer.getvalue()
    if len(png) > MAX_PNG_BYTES:  # a guard, not expected: the figures above are a few tens of kB
        raise ValueError(f"chart {name} is {len(png):,} bytes, above {MAX_PNG_BYTES:,}")
    return Chart(name, title, png)
