"""How far an objective is from its bound: the relative gap, and whether it is within a tolerance."""

from __future__ import annotations

import math


def relative_gap(objective: float, bound: float) -> float:
    """(bound - objective) / max(1, |bound|); inf when there is no bound."""
    if math.isinf(bound):
        return math.inf
    return max(bound - objective, 0.0) / max(1.0, abs(bound))


def within(value: float, bound: float, tolerance: float) -> bool:
    """Whether `value` is proven within `tolerance` (relative) of `bound`."""
    return value >= bound or relative_gap(value, bound) <= tolerance


def magnitude_floor(objective: float, upper: float) -> float:
    """A number at most |bound| for any bound between `objective` (achieved) and `upper` (a bound)."""
    if objective > 0:
        return objective
    if upper < 0:
        return -upper
    return 1.0

