"""solvers.cpsat.build_model writes its proto from arrays: it must be the model CpModel's methods write."""

import numpy as np
import pytest
from ortools.sat.python import cp_model

from solvers import SolverParams
from solvers.compiled import compile_instance
from solvers.cpsat import SOLVED, SearchLimits, build_model, solve_part
from tests.solvers.builders import instance
from tests.solvers.test_determinism_and_stability import contested_month


def model_through_the_api(c, requests, room, mask, maximise_served_must):
    """SPEC §3's model written with CpModel's own methods, variable per pair (the reference)."""
    built = build_model(c, requests, room, mask, maximise_served_must)
    pairs = built.pairs
    model = cp_model.CpModel()
    x = [model.new_bool_var("") for _ in range(len(pairs))]
    pair_request = c.pair_request[pairs]
    soft = []
    for request in np.unique(pair_request).tolist():
        group = [x[k] for k in np.flatnonzero(pair_request == request).tolist()]
        if c.must_allocate[request] and not maximise_served_must:
            model.add_exactly_one(group)
        else:
            model.add_at_most_one(group)
            if c.must_allocate[request]:
                soft.extend(group)
    pair_resource = c.pair_resource[pairs]
    for resource in np.unique(pair_resource).tolist():
        block = np.flatnonzero(pair_resource == resource)
        units = c.pair_units[pairs][block]
        if int(units.sum()) > room[resource]:
            model.add(cp_model.LinearExpr.weighted_sum([x[k] for k in block.tolist()], units.tolist())
                      <= int(room[resource]))
    if maximise_served_must:
        model.maximize(sum(soft))
    else:
        model.maximize(cp_model.LinearExpr.weighted_sum(x, c.pair_value[pairs].tolist()))
    return built, model


@pytest.mark.parametrize("maximise_served_must", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_model_written_from_arrays_is_the_model_cpmodel_writes(seed, maximise_served_must):
    requests, resources, eligibility = contested_month(n_requests=60, n_resources=8, seed=seed)
    for k, request in enumerate(requests):
        request["must_allocate"] = k % 7 == 0
    c = compile_instance(instance(requests, resources, eligibility=eligibility), SolverParams())
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(c.must_allocate), size=40, replace=False))
    mask = rng.random(len(c.capacity)) < 0.8
    room = (c.capacity * rng.uniform(0.2, 1.0, len(c.capacity))).astype(np.int64)

    built, reference = model_through_the_api(c, chosen, room, mask, maximise_served_must)

    assert len(built.pairs) > 0 and built.num_constraints > 0
    assert str(built.model.proto) == str(reference.proto)


def test_a_hinted_re_solve_returns_the_pairs_its_solution_takes():
    requests, resources, eligibility = contested_month(n_requests=30, n_resources=5, seed=4)
    c = compile_instance(instance(requests, resources, eligibility=eligibility), SolverParams())
    everyone = np.arange(len(c.must_allocate))
    result = solve_part(c, everyone, c.capacity.copy(), SearchLimits(deterministic_time=5.0, wall_seconds=10.0, seed=1))
    assert result.status in SOLVED
    taken = result.chosen[result.chosen >= 0]
    assert c.pair_value[taken].sum() == result.objective
    assert (np.bincount(c.pair_resource[taken], weights=c.pair_units[taken], minlength=len(c.capacity))
            <= c.capacity).all()
    assert len(np.unique(c.pair_request[taken])) == len(taken)
