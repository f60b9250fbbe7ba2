"""Capacity advice: what one more unit of capacity serves, per resource and per service x region group.

The LP relaxation of the month (solvers/bound.py's model, every resource with a capacity row) is
solved with HiGHS (highspy, kept in memory): a capacity row's dual is the shadow price of one more
unit there, HiGHS's ranging says up to which capacity that price holds, and where the optimum is
degenerate (the price of the next unit is lower than the dual says) a second, warm-started solve
with one more unit measures the next unit's value instead.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import os
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, replace

import highspy
import numpy as np
import pandas as pd

from solvers.compiled import NO_PAIR, CompiledInstance, compile_instance
from solvers.schema import STATUS_ALLOCATED, STATUS_PINNED, AllocationInstance, SolverParams

RESOURCE_ADVICE_COLUMNS = [
    "resource_id", "name", "service", "region", "capacity", "used_units", "idle_units", "shadow_price",
    "holds_for_units", "value_over_range", "expected_gain", "unallocated_requests", "unallocated_value", "rank",
]
GROUP_ADVICE_COLUMNS = [
    "service", "region", "resources", "capacity", "used_units", "idle_units", "shadow_price", "best_resource_id",
    "holds_for_units", "value_over_range", "unallocated_requests", "unallocated_value",
]
# Top places shown (plan, status, report, workbook, Dagster metadata).
TOP_PLACES = 10
# A price below this (objective units per capacity unit) is no price: HiGHS's dual tolerance is 1e-7.
PRICE_EPSILON = 1e-6
# The range a price "holds for" is capped: past the eligible demand it means nothing to a manager.
MAX_RANGE_UNITS = 1_000_000


# LP prices kept per process (capacity_advice): the plan's advice and the proposal's solve the same LP (the
# month's instance and parameters; only the allocation compared differs), and a warm run worker executes both
# steps in one process. A few entries: a process serves one run at a time.
KEPT_PRICES = 4


class AdviceError(RuntimeError):
    """The LP relaxation behind the advice could not be solved (infeasible or out of time)."""


@dataclass
class CapacityAdvice:
    """Per resource and per group: shadow price, the units it holds for, unallocated value, idle units."""

    resources: pd.DataFrame  # RESOURCE_ADVICE_COLUMNS, ranked (1 = extra capacity serves most)
    groups: pd.DataFrame  # GROUP_ADVICE_COLUMNS
    lp_bound: float
    seconds: float

    def top(self, count: int = TOP_PLACES) -> pd.DataFrame:
        """The places where one more unit serves most (a positive price), best first."""
        priced = self.resources[self.resources["shadow_price"] > PRICE_EPSILON]
        return priced.sort_values("rank").head(count).reset_index(drop=True)

    def idle(self, count: int = TOP_PLACES) -> pd.DataFrame:
        """Resources with spare capacity that nothing unallocated can use, most idle units first."""
        spare = self.resources[(self.resources["idle_units"] > 0) & (self.resources["shadow_price"] <= PRICE_EPSILON)
                               & (self.resources["unallocated_requests"] == 0)]
        return spare.sort_values(["idle_units", "resource_id"], ascending=[False, True]).head(count).reset_index(drop=True)


def sentence(row: dict) -> str:
    """The advice of one place in a manager's words."""
    units = int(row["holds_for_units"])
    return (f"one more unit on {row['resource_id']} ({str(row['service']).title()}, {str(row['region']).title()}) "
            f"would serve about {_figure(float(row['shadow_price']))} value; it holds for the next "
            f"{units:,} unit{'s' if units != 1 else ''}")


def _figure(value: float) -> str:
    return f"{value:,.1f}" if abs(value) < 100 else f"{value:,.0f}"


def capacity_advice(
    instance: AllocationInstance, params: SolverParams, allocations: pd.DataFrame, time_limit_s: float = 600.0,
) -> CapacityAdvice:
    """Advice for a month and one of its allocations (ALLOCATION_COLUMNS: request_id, resource_id, units, status)."""
    started = time.perf_counter()
    # Capacity economics, not churn: the previous version's stability bonus is left out.
    c = compile_instance(replace(instance, previous={}), params)
    bound, price, holds_for = _lp_prices(c, time_limit_s)
    resources = instance.resources.reset_index(drop=True)
    used = _used_units(c, allocations)
    unallocated = _unallocated_mask(c, allocations)
    idle = np.maximum(c.capacity - used, 0).astype("int64")
    # Pairs of unallocated requests that would add value: what more capacity there could serve.
    open_pairs = unallocated[c.pair_request] & (c.pair_value > 0)
    unallocated_value = np.bincount(c.pair_resource[open_pairs], weights=c.pair_value[open_pairs],
                                    minlength=len(c.capacity))
    unallocated_requests = np.bincount(c.pair_resource[open_pairs], minlength=len(c.capacity))
    table = pd.DataFrame({
        "resource_id": resources["resource_id"].astype(str),
        "name": resources["name"].astype(str) if "name" in resources else resources["resource_id"].astype(str),
        "service": resources["service"].astype(str),
        "region": resources["region"].astype(str),
        "capacity": c.capacity.astype("int64"),
        "used_units": used,
        "idle_units": idle,
        "shadow_price": np.round(price, 4),
        "holds_for_units": holds_for.astype("int64"),
        "value_over_range": np.round(price * holds_for, 2),
        # What the version itself would gain: a priced resource's idle units are leftovers no waiting request
        # fits whole, which the LP already fills in fractions; with the advised units whole requests use them.
        "expected_gain": np.round(np.where(price > PRICE_EPSILON, price * (holds_for + idle), 0.0), 2),
        "unallocated_requests": unallocated_requests.astype("int64"),
        "unallocated_value": unallocated_value.astype("int64"),
    })
    order = np.lexsort((table["resource_id"].to_numpy(), -table["value_over_range"].to_numpy(),
                        -table["shadow_price"].to_numpy()))
    rank = np.empty(len(table), dtype="int64")
    rank[order] = np.arange(1, len(table) + 1)
    table["rank"] = rank
    groups = _groups(c, table, unallocated, instance)
    return CapacityAdvice(resources=table[RESOURCE_ADVICE_COLUMNS], groups=groups, lp_bound=bound,
                          seconds=time.perf_counter() - started)


_prices: OrderedDict[str, tuple[float, np.ndarray, np.ndarray]] = OrderedDict()


def _lp_prices(c: CompiledInstance, time_limit_s: float) -> tuple[float, np.ndarray, np.ndarray]:
    """The LP's bound, and per resource its price and the units it holds for (_CapacityLp.prices); the same LP
    with the same budget solved earlier in this process is not solved again. Only an answer found within its
    budget is kept: one cut short by the time limit depends on the machine's pace, not on the LP."""
    key = _lp_key(c, time_limit_s)
    if key in _prices:
        _prices.move_to_end(key)
        return _prices[key]
    lp = _CapacityLp(c, time_limit_s)
    price, holds_for = lp.prices()
    found = (lp.bound, price, holds_for)
    if lp._time_left():
        for array in (price, holds_for):
            array.setflags(write=False)  # shared by every later caller
        _prices[key] = found
        while len(_prices) > KEPT_PRICES:
            _prices.popitem(last=False)
    return found


def _lp_key(c: CompiledInstance, time_limit_s: float) -> str:
    """What _CapacityLp reads of a compiled instance, and the budget, as one digest."""
    digest = hashlib.blake2b(repr((float(c.objective_offset), float(time_limit_s), c.num_requests)).encode())
    for array in (c.pair_request_start, c.pair_request, c.pair_resource, c.pair_units, c.pair_value, c.fixed_pair,
                  c.must_allocate, c.capacity):
        digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(str(np.asarray(array).dtype).encode())
    return digest.hexdigest()


class _CapacityLp:
    """The month's LP relaxation in HiGHS, one capacity row per resource with pairs, kept for re-solves."""

    def __init__(self, c: CompiledInstance, time_limit_s: float):
        self.c = c
        n_pairs, n_resources = c.num_pairs, len(c.capacity)
        requests = np.flatnonzero(np.diff(c.pair_request_start) > 0)
        self.request_rows = len(requests)
        request_row = np.full(c.num_requests, -1, dtype=np.int64)
        request_row[requests] = np.arange(len(requests))
        has_pairs = np.bincount(c.pair_resource, minlength=n_resources) > 0
        self.resource_row = np.full(n_resources, -1, dtype=np.int64)
        self.resource_row[has_pairs] = len(requests) + np.arange(int(has_pairs.sum()))
        self.objective_offset = float(c.objective_offset)
        self.h = _highs()
        # One budget for the whole advice: the first solve must end within it (else no advice); the
        # measuring re-solves stop when it runs out, keeping the duals and ranging where not measured.
        self.deadline = time.perf_counter() + float(time_limit_s)
        if n_pairs == 0:
            self.bound = float(c.objective_offset)
            self.solved = False
            return
        # Column-wise matrix: each pair is in its request's row (coefficient 1) and its resource's row (units).
        rows = np.column_stack([request_row[c.pair_request], self.resource_row[c.pair_resource]]).ravel()
        values = np.column_stack([np.ones(n_pairs), c.pair_units.astype(float)]).ravel()
        lp = highspy.HighsLp()
        lp.num_col_ = n_pairs
        lp.num_row_ = len(requests) + int(has_pairs.sum())
        lp.sense_ = highspy.ObjSense.kMaximize
        lp.col_cost_ = c.pair_value.astype(float)
        lower = np.zeros(n_pairs)
        fixed = c.fixed_pair
        lower[fixed[fixed != NO_PAIR]] = 1.0
        lp.col_lower_ = lower
        lp.col_upper_ = np.ones(n_pairs)
        must = c.must_allocate[requests]
        lp.row_lower_ = np.concatenate([np.where(must, 1.0, -highspy.kHighsInf), np.full(int(has_pairs.sum()), -highspy.kHighsInf)])
        lp.row_upper_ = np.concatenate([np.ones(len(requests)), c.capacity[has_pairs].astype(float)])
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = np.arange(0, 2 * n_pairs + 1, 2, dtype=np.int32)
        lp.a_matrix_.index_ = rows.astype(np.int32)
        lp.a_matrix_.value_ = values
        self.h.passModel(lp)
        self.bound = self._run() + self.objective_offset
        self.solved = True

    def _run(self) -> float:
        self.h.setOptionValue("time_limit", max(self.deadline - time.perf_counter(), 0.01))
        self.h.run()
        status = self.h.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            raise AdviceError(f"LP relaxation of the capacity advice not solved ({self.h.modelStatusToString(status)})")
        return float(self.h.getInfo().objective_function_value)

    def _ranging(self):
        """HiGHS's sensitivity ranging of the current optimum."""
        status, ranging = self.h.getRanging()
        if status != highspy.HighsStatus.kOk:
            raise AdviceError("HiGHS could not range the LP relaxation of the capacity advice")
        return ranging

    def prices(self) -> tuple[np.ndarray, np.ndarray]:
        """Per resource: the value of one more unit, and for how many units that value holds."""
        c = self.c
        n = len(c.capacity)
        price, holds = np.zeros(n), np.zeros(n, dtype=np.int64)
        if not self.solved:
            return price, holds
        rows = self.resource_row
        has_row = np.flatnonzero(rows >= 0)
        dual = np.asarray(self.h.getSolution().row_dual)
        up = np.asarray(self._ranging().row_bound_up.value_)
        priced = has_row[dual[rows[has_row]] > PRICE_EPSILON]
        span = up[rows[priced]] - c.capacity[priced]
        price[priced] = dual[rows[priced]]
        holds[priced] = [_units(max(value, 0.0)) for value in span]
        # Degenerate optimum (the price holds for less than a unit): the dual may price the units already
        # used, not the next one (any value between the two is a dual). A second solve measures the
        # next unit. Only where it can change what is shown: the highest prices first, each measured
        # price put back in line, until the top places are all measured (each solve is a warm-started
        # re-solve: 1,000 of them took 112 s on the 20,000-request month under load).
        try:
            self._measure(price, holds, priced, span)
        except AdviceError:
            pass  # out of time: the places not measured keep the dual and HiGHS's ranging
        return np.where(price > PRICE_EPSILON, price, 0.0), holds

    def _measure(self, price: np.ndarray, holds: np.ndarray, priced: np.ndarray, span: np.ndarray) -> None:
        """Second solves at degenerate optima and range searches, for the places shown (in place)."""
        c = self.c
        n = len(c.capacity)
        measured = np.zeros(n, dtype=bool)
        measured[priced[span >= 1.0]] = True
        queue = [(-price[r], int(r)) for r in priced]
        heapq.heapify(queue)
        confirmed: list[int] = []
        while queue and len(confirmed) < TOP_PLACES and self._time_left():
            _, r = heapq.heappop(queue)
            if measured[r]:
                confirmed.append(r)
                continue
            price[r], holds[r], measured[r] = self._gain(r, 1), 1, True
            if price[r] > PRICE_EPSILON:
                heapq.heappush(queue, (-price[r], r))
        # Ranging stops at the first change of basis, which a degenerate optimum makes early: for the
        # places shown, the units the price holds for are searched by warm-started re-solves.
        useful = np.bincount(c.pair_resource[c.pair_value > 0], weights=c.pair_units[c.pair_value > 0],
                             minlength=n)
        shown = confirmed
        for r in shown:
            if not self._time_left():
                break
            holds[r] = self._holds_for(int(r), float(price[r]), int(holds[r]),
                                       max(int(useful[r]) - int(c.capacity[r]), int(holds[r])))

    def _time_left(self) -> bool:
        return time.perf_counter() < self.deadline

    def _gain(self, r: int, units: int) -> float:
        """What `units` more capacity on resource r add to the LP optimum (the row is restored after)."""
        row = int(self.resource_row[r])
        capacity = float(self.c.capacity[r])
        self.h.changeRowBounds(row, -highspy.kHighsInf, capacity + units)
        try:
            return self._run() - (self.bound - self.objective_offset)
        finally:
            self.h.changeRowBounds(row, -highspy.kHighsInf, capacity)

    def _holds_for(self, r: int, price: float, known: int, limit: int) -> int:
        """The most units (known <= n <= limit) over which each unit on r still adds `price`.

        The LP optimum is concave in a capacity, so "n units add price x n" holds up to some n and
        fails after it: doubling, then bisection.
        """
        def holds(n: int) -> bool:
            return self._gain(r, n) >= price * n - 1e-6 * max(1.0, price * n)

        good, bad = max(known, 1), None
        while bad is None and good < limit and self._time_left():
            trial = min(2 * good, limit)
            if holds(trial):
                good = trial
            else:
                bad = trial
        while bad is not None and bad - good > 1 and self._time_left():
            middle = (good + bad) // 2
            if holds(middle):
                good = middle
            else:
                bad = middle
        return good


def _highs() -> highspy.Highs:
    """A silent HiGHS instance. The first one in a process prints HiGHS's banner on the C level's stdout before
    any option can be set, which would corrupt a command's --json output: that one line goes to /dev/null."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    h.silent()
    return h


def _units(span: float) -> int:
    """Whole units within a ranging span (HiGHS's tolerance allowed for)."""
    if not math.isfinite(span):
        return MAX_RANGE_UNITS
    return int(min(math.floor(span + 1e-6), MAX_RANGE_UNITS))


def _used_units(c: CompiledInstance, allocations: pd.DataFrame) -> np.ndarray:
    """Units allocated on each resource by `allocations`."""
    placed = allocations[allocations["status"].isin([STATUS_ALLOCATED, STATUS_PINNED])]
    index = pd.Index(c.resource_ids).get_indexer(placed["resource_id"])
    known = index >= 0
    return np.bincount(index[known], weights=placed["units"].to_numpy(dtype=float)[known],
                       minlength=len(c.capacity)).astype("int64")


def _unallocated_mask(c: CompiledInstance, allocations: pd.DataFrame) -> np.ndarray:
    """Per request: not allocated by `allocations` (excluded ones have no pairs and so add nothing)."""
    placed = allocations.loc[allocations["status"].isin([STATUS_ALLOCATED, STATUS_PINNED]), "request_id"]
    return ~pd.Index(c.request_ids).isin(placed.astype(str).tolist())


def _groups(c: CompiledInstance, table: pd.DataFrame, unallocated: np.ndarray,
            instance: AllocationInstance) -> pd.DataFrame:
    """Per service x region: the best place in the group and what its unallocated requests are worth."""
    best = (table.sort_values(["service", "region", "rank"]).groupby(["service", "region"], sort=True).head(1)
            .set_index(["service", "region"]))
    sums = table.groupby(["service", "region"], sort=True).agg(
        resources=("resource_id", "size"), capacity=("capacity", "sum"), used_units=("used_units", "sum"),
        idle_units=("idle_units", "sum"))
    # A request's worth: its best pair (what it adds when served at all), counted once in its own group.
    starts = c.pair_request_start[:-1]
    has = np.diff(c.pair_request_start) > 0
    worth = np.zeros(c.num_requests)
    if has.any():
        worth[has] = np.maximum.reduceat(c.pair_value, starts[has])
    open_requests = unallocated & has & (worth > 0)
    requests = instance.requests
    waiting = pd.DataFrame({"service": requests["service"].astype(str).to_numpy()[open_requests],
                            "region": requests["region"].astype(str).to_numpy()[open_requests],
                            "worth": worth[open_requests]})
    open_sums = waiting.groupby(["service", "region"]).agg(unallocated_requests=("worth", "size"),
                                                          unallocated_value=("worth", "sum"))
    groups = sums.join(best[["resource_id", "shadow_price", "holds_for_units", "value_over_range"]]).join(open_sums)
    groups = groups.rename(columns={"resource_id": "best_resource_id"}).reset_index()
    groups["unallocated_requests"] = groups["unallocated_requests"].fillna(0).astype("int64")
    groups["unallocated_value"] = groups["unallocated_value"].fillna(0).astype("int64")
    priced = groups["shadow_price"] > PRICE_EPSILON
    groups.loc[~priced, ["best_resource_id"]] = None
    groups.loc[~priced, ["shadow_price", "value_over_range"]] = 0.0
    groups.loc[~priced, "holds_for_units"] = 0
    groups = groups.sort_values(["shadow_price", "value_over_range", "service", "region"],
                                ascending=[False, False, True, True])
    return groups[GROUP_ADVICE_COLUMNS].reset_index(drop=True)
