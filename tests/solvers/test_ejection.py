"""Ejection chains: gaining moves only, within capacity, never moving held requests."""

import numpy as np

from solvers import SolverParams, ejection
from solvers.compiled import NO_PAIR, compile_instance
from solvers.greedy import greedy_fill, initial_assignment
from tests.solvers.builders import eligibility_table, instance
from tests.solvers.test_determinism_and_stability import contested_month


def everything(c):
    return np.arange(c.num_requests), np.ones(c.num_pairs, dtype=bool)


def test_a_request_is_placed_by_shifting_the_one_in_its_way_to_a_resource_with_room():
    inst = instance([{"request_id": "LOW", "units": 5, "priority": 5}, {"request_id": "HIGH", "units": 5, "priority": 1}],
                    [{"resource_id": "R1", "capacity_units": 5}, {"resource_id": "R2", "capacity_units": 5}],
                    eligibility=eligibility_table([("LOW", "R1", 0, None), ("LOW", "R2", 0, None),
                                                   ("HIGH", "R1", 0, None)]))
    c = compile_instance(inst, SolverParams())
    start = np.array([c.pair_request_start[0], NO_PAIR])  # LOW on R1, HIGH left out
    improved, _ = ejection.improve(c, start, *everything(c), deadline=np.inf)
    assert c.resource_ids[c.pair_resource[improved]].tolist() == ["R2", "R1"]
    assert c.objective(improved) > c.objective(start)


def test_ejection_never_loses_value_overfills_a_resource_or_moves_a_pin():
    requests, resources, eligibility = contested_month(seed=8)
    inst = instance(requests, resources, eligibility=eligibility)
    c = compile_instance(inst, SolverParams())
    start = greedy_fill(c, initial_assignment(c))
    pinned = int(np.flatnonzero(start != NO_PAIR)[0])
    c.pinned_pair[pinned] = start[pinned]  # held like a pin
    improved, passes = ejection.improve(c, start, *everything(c), deadline=np.inf)
    assert passes >= 2, "passes repeat until one gains nothing"
    assert c.objective(improved) > c.objective(start)
    assert (c.load(improved) <= c.capacity).all()
    assert improved[pinned] == start[pinned]
    again, _ = ejection.improve(c, improved, *everything(c), deadline=np.inf)
    assert np.array_equal(again, improved), "a local optimum stays put"
