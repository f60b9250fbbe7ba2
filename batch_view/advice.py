"""The month page's capacity advice: what the version (or, before one, the plan) already wrote, never recomputed.

A version keeps its advice in its manifest (metrics.capacity_advice: the top places with their sentence, the
idle resources, the groups where most value waits; batch/advice.py), beside advice/*.parquet; a plan keeps the
same sentences in its summary. The page reads them: solving the LP again on each load would take seconds.
"""

from __future__ import annotations

from typing import Any

from batch.advice_text import ADVICE_KEY, advice_lines
from batch_view.sources import Sources


def advice_context(src: Sources, month: str, version: int | None, plan: dict[str, Any] | None) -> dict[str, Any]:
    """The advice shown: the version's places and idle resources, else the plan's lines, else none."""
    if version is not None:
        record = (src.exports.manifest(month, version).get("metrics") or {}).get(ADVICE_KEY)
        if record is not None:
            available = bool(record.get("available"))
            return {"source": "version", "version": version, "available": available,
                    "lines": advice_lines(record), "top": record.get("top") or [],
                    "idle": record.get("idle") or [], "groups": record.get("groups") or [],
                    "lp_bound": record.get("lp_bound")}
    lines = (plan or {}).get("summary", {}).get(ADVICE_KEY)
    if lines is not None:
        return {"source": "plan", "version": None, "available": bool(lines), "lines": list(lines),
                "top": [], "idle": [], "groups": [], "lp_bound": None, "planned_at": (plan or {}).get("created_at")}
    return {"source": None, "version": version, "available": False, "lines": [], "top": [], "idle": [], "groups": [],
            "lp_bound": None}
