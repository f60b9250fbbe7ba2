"""The month's relaxation (LP, else Lagrangian): its bound per component, its prices, its rounding."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from solvers.bound import (
    BoundError,
    LagrangianBound,
    LpRelaxation,
    lagrangian_bound,
    lp_relaxation,
)
from solvers.budget import Budget
from solvers.compiled import NO_PAIR, CompiledInstance, chosen_pairs
from solvers.greedy import greedy_fill
from solvers.schema import BOUND_LAGRANGIAN, BOUND_LP

# Deterministic work charged for the LP relaxation, per pair (deterministic mode only).
LP_WORK_PER_PAIR = 5e-6
# The LP relaxation (bound and rounding) gets at most this share of the time left; past it, or
# above LP_MAX_PAIRS usable pairs, the capacity-relaxed Lagrangian bound stands in (at most
# LAGRANGIAN_SHARE of the time left), with the greedy at its prices as rounding. Measured: at
# 1,000,000 pairs HiGHS took 19.8 s, 300 subgradient steps 1.4 s and came within 0.0014 % of the
# LP; on the 20,000-request month at 20 s the search ended 0.27 % below the LP from the
# Lagrangian prices and 0.40 % from the LP rounding (one run each, under load).
LP_SHARE = 0.3
LP_MAX_PAIRS = 150_000
LAGRANGIAN_SHARE = 0.1


@dataclass
class Relaxation:
    """The month's relaxation, computed once when first needed: LP, else Lagrangian."""

    kind: str  # BOUND_LP or BOUND_LAGRANGIAN
    lp: LpRelaxation | None
    lagrangian: LagrangianBound | None
    note: str
    seconds: float

    @property
    def price(self) -> np.ndarray:
        """Capacity prices: the LP's duals or the Lagrangian multipliers."""
        if self.lp is not None:
            return self.lp.resource_dual
        assert self.lagrangian is not None  # one of the two is always set
        return self.lagrangian.price

    def part_bound(self, c: CompiledInstance, part: np.ndarray, pairs: np.ndarray, room: np.ndarray) -> float:
        """The bound of one component (`part`, its usable `pairs`)."""
        if self.lp is not None:
            return float(c.pair_value[pairs] @ self.lp.x[pairs])
        assert self.lagrangian is not None
        return self.lagrangian.value(room, part, np.unique(c.pair_resource[pairs]))


def relax(
    c: CompiledInstance, assign: np.ndarray, fixed: np.ndarray, room: np.ndarray, usable: np.ndarray,
    budget: Budget,
) -> Relaxation:
    """The month's LP relaxation when it solves in its share of the time, else the Lagrangian bound."""
    t = time.perf_counter()
    n_usable = int(usable.sum())
    if n_usable <= LP_MAX_PAIRS:
        try:
            limit = max(LP_SHARE * budget.left() if not budget.deterministic
                        else budget.safety_end - time.perf_counter(), 1.0)
            lp = lp_relaxation(c, limit, usable=usable)
            budget.charge(LP_WORK_PER_PAIR * c.num_pairs)
            return Relaxation(BOUND_LP, lp, None, "", time.perf_counter() - t)
        except BoundError as error:
            note = f"LP relaxation not solved in {limit:.0f} s ({error}); Lagrangian bound instead"
    else:
        note = f"LP relaxation skipped ({n_usable:,} pairs > {LP_MAX_PAIRS:,}); Lagrangian bound instead"
    pairs = np.flatnonzero(usable)
    lower = float(c.pair_value[chosen_pairs(np.where(fixed == NO_PAIR, assign, NO_PAIR))].sum())
    left = budget.left() if not budget.deterministic else budget.safety_end - time.perf_counter()
    lagrangian = lagrangian_bound(c, pairs, room, lower, time.perf_counter() + max(LAGRANGIAN_SHARE * left, 1.0))
    budget.charge(LP_WORK_PER_PAIR * c.num_pairs)
    return Relaxation(BOUND_LAGRANGIAN, None, lagrangian,
                       f"{note} ({lagrangian.iterations} subgradient iterations)", time.perf_counter() - t)


def rounding(
    c: CompiledInstance, assign: np.ndarray, part: np.ndarray, pairs: np.ndarray, relaxation: Relaxation
) -> np.ndarray:
    """The LP's integral pairs of `part` (they fit together), the rest filled greedily at the relaxation's prices."""
    rounded = assign.copy()
    rounded[part] = NO_PAIR
    if relaxation.lp is not None:
        integral = pairs[relaxation.lp.x[pairs] > 1 - 1e-6]
        rounded[c.pair_request[integral]] = integral
    return greedy_fill(c, rounded, requests=part, resource_price=relaxation.price)
