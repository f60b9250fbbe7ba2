"""Baselines the benchmarks compare against: plain CP-SAT (our model, nothing of our search) and the greedy alone."""

from __future__ import annotations

import time

import numpy as np
from ortools.sat.python import cp_model

from solvers.compiled import NO_PAIR, CompiledInstance
from solvers.cpsat import build_model
from solvers.greedy import greedy_fill, initial_assignment


def plain_cpsat(c: CompiledInstance, time_limit_s: float, workers: int = 2) -> tuple[np.ndarray | None, float]:
    """solvers.cpsat.build_model over the whole month, solved by CP-SAT alone: (pair per request or None, seconds).

    No hint, no decomposition, no LP, no LNS or tabu; pins are fixed (their units leave the
    room), every other request is a variable. The model is the one solve() builds per component.
    """
    started = time.perf_counter()
    pinned = initial_assignment(c)
    free = np.flatnonzero(pinned == NO_PAIR)
    built = build_model(c, free, c.capacity - c.load(pinned))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(max(time_limit_s - (time.perf_counter() - started), 0.01))
    solver.parameters.num_workers = workers
    status = solver.solve(built.model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None, time.perf_counter() - started
    chosen = built.pairs[built.taken(solver)]
    assign = pinned.copy()
    assign[c.pair_request[chosen]] = chosen
    return assign, time.perf_counter() - started


def greedy_only(c: CompiledInstance) -> tuple[np.ndarray, float]:
    """The greedy warm start alone: (pair per request, seconds)."""
    started = time.perf_counter()
    assign = greedy_fill(c, initial_assignment(c))
    return assign, time.perf_counter() - started
