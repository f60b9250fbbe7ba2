"""The one definition of the relative gap, apart from the model: figures and reports read it without
loading OR-Tools, numba and SciPy (about 1.4 s of CPU, measured by `python -X importtime`)."""

from __future__ import annotations

import math


def relative_gap(objective: float, bound: float) -> float:
    """(bound - objective) / max(1, |bound|); inf when there is no bound."""
    if math.isinf(bound):
        return math.inf
    return max(bound - objective, 0.0) / max(1.0, abs(bound))
