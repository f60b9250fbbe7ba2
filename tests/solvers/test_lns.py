"""The LNS's re-solves: in wall-clock mode each thread goes on at its own pace, never on the
resources or requests of a re-solve still in flight, and what it applies keeps the month feasible."""

import threading
import time

import numpy as np

from solvers import SolverParams, lns
from solvers.compiled import NO_PAIR, compile_instance
from solvers.greedy import greedy_fill, initial_assignment
from tests.solvers.builders import instance
from tests.solvers.test_determinism_and_stability import contested_month


def test_asynchronous_threads_go_on_at_their_own_pace_never_share_what_is_in_flight_and_keep_the_month_feasible(monkeypatch):
    requests, resources, eligibility = contested_month(n_requests=600, n_resources=60, seed=4)
    c = compile_instance(instance(requests, resources, eligibility=eligibility), SolverParams())
    start = greedy_fill(c, initial_assignment(c))
    held = int(np.flatnonzero(start != NO_PAIR)[0])
    c.pinned_pair[held] = start[held]
    in_flight: dict[int, tuple[set[int], set[int]]] = {}
    overlaps, most_in_flight, most_beside = [], [0], [0]
    slow_thread: list[int] = []  # the first thread's re-solves take longer
    started_beside: dict[int, int] = {}  # per thread in flight: re-solves the other began meanwhile
    guard = threading.Lock()
    real_solve_part = lns.solve_part

    def watched_solve_part(c, requests, room, limits, resource_mask=None, hint=None):
        key = threading.get_ident()
        mine = (set(requests.tolist()), set(np.flatnonzero(resource_mask).tolist()))
        with guard:
            for other_requests, other_resources in in_flight.values():
                if mine[0] & other_requests or mine[1] & other_resources:
                    overlaps.append(mine)
            in_flight[key] = mine
            most_in_flight[0] = max(most_in_flight[0], len(in_flight))
            slow_thread[:] = slow_thread or [key]
            for other in started_beside:
                started_beside[other] += 1
            started_beside[key] = 0
        try:
            time.sleep(0.03 if key == slow_thread[0] else 0.002)
            return real_solve_part(c, requests, room, limits, resource_mask=resource_mask, hint=hint)
        finally:
            with guard:
                del in_flight[key]
                most_beside[0] = max(most_beside[0], started_beside.pop(key))

    monkeypatch.setattr(lns, "solve_part", watched_solve_part)
    improved, stats = lns.improve(c, start, float("inf"), time.perf_counter() + 1.5, seed=3,
                                  sub_deterministic_time=0.005, threads=2)
    assert most_in_flight[0] == 2, "the two threads re-solve side by side"
    assert overlaps == []
    assert most_beside[0] >= 2, "the faster thread goes on while the slower one's re-solve is in flight"
    assert stats.improvements > 0 and c.objective(improved) > c.objective(start)
    assert (c.load(improved) <= c.capacity).all()
    assert improved[held] == start[held]
    assert len(np.unique(improved[improved != NO_PAIR])) == int((improved != NO_PAIR).sum())
    assert (c.pair_request[improved[improved != NO_PAIR]] == np.flatnonzero(improved != NO_PAIR)).all()


def test_in_wall_clock_mode_a_neighbourhood_is_drawn_again_rather_than_cut_by_what_is_in_flight():
    requests, resources, eligibility = contested_month(n_requests=200, n_resources=12, seed=6)
    c = compile_instance(instance(requests, resources, eligibility=eligibility), SolverParams())
    search = lns._Search(c, greedy_fill(c, initial_assignment(c)), np.arange(len(c.capacity)), seed=2)
    in_flight = search.next(whole=True)
    assert in_flight is not None and len(in_flight.chosen) >= 2
    drawn, refused = [], 0
    for _ in range(40):
        task = search.next(whole=True)
        if task is None:
            refused += 1
            continue
        drawn.append(task)
        assert not set(task.chosen.tolist()) & set(in_flight.chosen.tolist())
        assert not set(task.free.tolist()) & set(in_flight.free.tolist())
        assert len(task.chosen) >= 2, "whole, as drawn: never cut down to what is not in flight"
        search.busy_resources[task.chosen] = False
        search.busy_requests[task.free] = False
    assert drawn, "neighbourhoods clear of the one in flight are found"


def test_a_component_with_few_resources_gets_one_thread_in_wall_clock_mode(monkeypatch):
    requests, resources, eligibility = contested_month(n_requests=200, n_resources=2 * lns.RESOURCES_PER_THREAD - 1,
                                                       seed=6)
    c = compile_instance(instance(requests, resources, eligibility=eligibility), SolverParams())
    start = greedy_fill(c, initial_assignment(c))
    threads_seen = set()
    real_solve_part = lns.solve_part

    def watched_solve_part(*args, **kwargs):
        threads_seen.add(threading.get_ident())
        return real_solve_part(*args, **kwargs)

    monkeypatch.setattr(lns, "solve_part", watched_solve_part)
    improved, stats = lns.improve(c, start, float("inf"), time.perf_counter() + 0.5, seed=3, threads=2)
    assert stats.improvements > 0 and len(threads_seen) == 1
