"""Baselines the benchmarks compare against: a plain CP-SAT model and the greedy alone."""

from __future__ import annotations

import time

import numpy as np
from ortools.sat.python import cp_model

from solvers.compiled import NO_PAIR, CompiledInstance
from solvers.greedy import greedy_fill, initial_assignment


def plain_cpsat(c: CompiledInstance, time_limit_s: float, workers: int = 2) -> tuple[np.ndarray | None, float]:
    """The textbook model (no hint, no LNS of ours): (pair per request or None, seconds)."""
    started = time.perf_counter()
    model = cp_model.CpModel()
    x = [model.new_bool_var("") for _ in range(c.num_pairs)]
    starts = c.pair_request_start.tolist()
    for i in range(c.num_requests):
        group = x[starts[i] : starts[i + 1]]
        if c.must_allocate[i] and c.pinned_pair[i] == NO_PAIR:
            model.add_exactly_one(group)
        elif group:
            model.add_at_most_one(group)
    for r in range(len(c.capacity)):
        block = c.resource_pairs[c.resource_start[r] : c.resource_start[r + 1]]
        model.add(cp_model.LinearExpr.weighted_sum([x[p] for p in block.tolist()],
                                                   c.pair_units[block].tolist()) <= int(c.capacity[r]))
    model.maximize(cp_model.LinearExpr.weighted_sum(x, c.pair_value.tolist()))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit_s)
    solver.parameters.num_workers = workers
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None, time.perf_counter() - started
    chosen = np.flatnonzero([solver.boolean_value(v) for v in x])
    assign = np.full(c.num_requests, NO_PAIR, dtype=np.int64)
    assign[c.pair_request[chosen]] = chosen
    return assign, time.perf_counter() - started


def greedy_only(c: CompiledInstance) -> tuple[np.ndarray, float]:
    """The greedy warm start alone: (pair per request, seconds)."""
    started = time.perf_counter()
    assign = greedy_fill(c, initial_assignment(c))
    return assign, time.perf_counter() - started
