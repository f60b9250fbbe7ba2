"""The tabu search for tight components: stays within capacity, keeps must_allocate, improves."""

from pathlib import Path

import numpy as np
import pytest

import solvers.model
from solvers import SolverParams, solve, tabu
from solvers.compiled import NO_PAIR, compile_instance
from solvers.gap_format import GAP_PARAMS_WEIGHTS, gap_instance
from tests.solvers.builders import assert_valid

DATA = Path(__file__).parent.parent / "data" / "gap"
PARAMS = SolverParams(weights=GAP_PARAMS_WEIGHTS)


def type_d_gap(path: Path, agents: int, jobs: int, seed: int) -> Path:
    """A GAP file of Chu and Beasley's type D (cost falls as weight rises, 80 % of the weight fits)."""
    rng = np.random.default_rng(seed)
    weight = rng.integers(1, 101, size=(agents, jobs))
    cost = 111 - weight + rng.integers(-10, 11, size=(agents, jobs))
    capacity = (0.8 * weight.sum(axis=1) / agents).astype(np.int64)
    numbers = [agents, jobs, *cost.reshape(-1), *weight.reshape(-1), *capacity]
    path.write_text(" ".join(str(int(x)) for x in numbers))
    return path


def whole(c):
    """The whole instance as one component: every request, every pair, full capacity."""
    return np.arange(c.num_requests), np.arange(c.num_pairs), c.capacity.copy()


def cheapest_pairs(c) -> np.ndarray:
    """Every request on its most valuable pair, ignoring capacity (overfull on a tight month)."""
    starts = c.pair_request_start
    return np.array([starts[j] + int(np.argmax(c.pair_value[starts[j]:starts[j + 1]]))
                     for j in range(c.num_requests)], dtype=np.int64)


def assert_within_capacity_and_complete(c, assign):
    assert (assign != NO_PAIR).all(), "a must_allocate request was dropped"
    assert (c.pair_request[assign] == np.arange(c.num_requests)).all()
    assert (c.load(assign) <= c.capacity).all()


@pytest.mark.parametrize("name", ["gap1-0", "gap2-0"])
def test_tabu_reaches_the_proven_optimum_of_a_small_gap_instance_from_an_overfull_start(name):
    inst = gap_instance(DATA / name)
    optimum = solve(inst, SolverParams(weights=GAP_PARAMS_WEIGHTS, time_limit_s=20.0, gap_tolerance=0.0))
    assert optimum.status == "OPTIMAL"
    c = compile_instance(inst, PARAMS)
    start = cheapest_pairs(c)
    assert (c.load(start) > c.capacity).any()
    part, pairs, room = whole(c)
    assign, spent = tabu.improve_component(c, start, part, pairs, room, 0.5, np.inf, seed=1)
    assert_within_capacity_and_complete(c, assign)
    assert c.objective(assign) == optimum.objective
    assert 0 < spent <= 0.5 * 1.01


def test_tabu_never_returns_an_allocation_worth_less_than_a_feasible_start(tmp_path):
    c = compile_instance(gap_instance(type_d_gap(tmp_path / "d", 8, 60, seed=4)), PARAMS)
    part, pairs, room = whole(c)
    feasible, _ = tabu.improve_component(c, cheapest_pairs(c), part, pairs, room, 0.2, np.inf, seed=2)
    assert_within_capacity_and_complete(c, feasible)
    for seed in range(3):
        again, _ = tabu.improve_component(c, feasible, part, pairs, room, 0.02, np.inf, seed=seed)
        assert_within_capacity_and_complete(c, again)
        assert c.objective(again) >= c.objective(feasible)


def test_tabu_only_moves_the_requests_of_its_component_within_their_free_room(tmp_path):
    c = compile_instance(gap_instance(type_d_gap(tmp_path / "d", 6, 40, seed=5)), PARAMS)
    # Requests 0..9 are held fixed where a feasible allocation puts them; the rest form the component.
    feasible, _ = tabu.improve_component(c, cheapest_pairs(c), *whole(c), 0.05, np.inf, seed=1)
    assert_within_capacity_and_complete(c, feasible)
    fixed = feasible[:10]
    part = np.arange(10, c.num_requests)
    pairs = np.arange(c.pair_request_start[10], c.num_pairs)
    assign = np.full(c.num_requests, NO_PAIR, dtype=np.int64)
    assign[:10] = fixed
    room = c.capacity - c.load(assign)
    start = assign.copy()
    start[part] = cheapest_pairs(c)[part]
    result, _ = tabu.improve_component(c, start, part, pairs, room, 0.2, np.inf, seed=3)
    assert (result[:10] == fixed).all()
    assert_within_capacity_and_complete(c, result)


def test_tabu_with_the_same_seed_and_work_gives_the_same_allocation_and_another_seed_a_valid_one(tmp_path):
    c = compile_instance(gap_instance(type_d_gap(tmp_path / "d", 10, 100, seed=6)), PARAMS)
    part, pairs, room = whole(c)
    runs = [tabu.improve_component(c, cheapest_pairs(c), part, pairs, room, 0.5, np.inf, seed=s)[0]
            for s in (9, 9, 10)]
    assert (runs[0] == runs[1]).all()
    assert_within_capacity_and_complete(c, runs[2])


def test_a_tight_month_is_improved_by_the_tabu_search_and_repeats_exactly(tmp_path, monkeypatch):
    calls = []
    real = tabu.improve_component

    def counted(*args, **kwargs):
        calls.append(len(args[2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(solvers.model.tabu, "improve_component", counted)
    inst = gap_instance(type_d_gap(tmp_path / "d", 10, 100, seed=7))
    reports = []
    params = SolverParams(weights=GAP_PARAMS_WEIGHTS, time_limit_s=30.0, seed=7, deterministic_work=1.0)
    first = solve(inst, params, progress=lambda *point: reports.append(point))
    second = solve(inst, params)
    assert calls == [100, 100]
    assert_valid(inst, first)
    assert first.allocations.equals(second.allocations)
    assert first.objective <= first.bound
    assert reports and reports[-1][1] == first.objective


def chain_component():
    """Requests J (on A or B) and K (on B or C), 5 units each on resources of room 5: J on A, K on B.

    J gains 10 on B and K loses 5 on C, so the only gaining move is the chain J -> B, K -> C (no
    swap: K has no pair on A).
    """
    return dict(request_start=np.array([0, 2, 4]), pair_resource=np.array([0, 1, 1, 2]),
                pair_units=np.array([5, 5, 5, 5]), pair_value=np.array([10, 20, 30, 25]),
                room=np.array([5, 5, 5]))


def test_one_iteration_applies_the_ejection_chain_that_no_single_shift_or_swap_reaches(monkeypatch):
    parts = chain_component()
    must = np.array([True, True])
    for chains, expected in ((True, [1, 3]), (False, [0, 2])):
        monkeypatch.setattr(tabu, "EJECTION_CHAINS", chains)
        pair_of = tabu._pair_map(parts["request_start"], parts["pair_resource"], 3)
        state = tabu.start(**{k: parts[k] for k in ("request_start", "pair_resource", "pair_units", "pair_value",
                                                    "room")},
                           assign=np.array([0, 2]), seed=1, pair_of=pair_of, profile=tabu.PENALTY_PROFILES[0])
        state.penalty[:] = 10.0  # an overfull unit costs more than J gains
        tabu.run(state, parts["request_start"], parts["pair_resource"], parts["pair_units"], parts["pair_value"],
                 must, parts["room"], 1)
        assert state.best.tolist() == expected
        assert state.best_value == (45 if chains else 40)
        assert (state.load <= parts["room"]).all()


def test_the_search_keeps_its_loads_equal_to_its_allocation_and_its_best_within_capacity(tmp_path):
    c = compile_instance(gap_instance(type_d_gap(tmp_path / "d", 8, 80, seed=11)), PARAMS)
    starts = c.pair_request_start.astype(np.int64)
    pair_of = tabu._pair_map(starts, c.pair_resource, len(c.capacity))
    state = tabu.start(starts, c.pair_resource, c.pair_units, c.pair_value, c.capacity, cheapest_pairs(c), 3,
                       pair_of, tabu.PENALTY_PROFILES[1])
    for _ in range(5):
        tabu.run(state, starts, c.pair_resource, c.pair_units, c.pair_value, c.must_allocate, c.capacity, 1500)
        assert (state.load == c.load(state.assign)).all()
        assert state.best_value > tabu.NO_BEST
        assert_within_capacity_and_complete(c, state.best)
        assert c.objective(state.best) == state.best_value

