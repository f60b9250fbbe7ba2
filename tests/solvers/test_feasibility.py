"""Random months: every proposal satisfies the executable spec in solvers.validation."""

import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from solvers import InfeasibleError, SolverParams, solve, validation
from solvers.compiled import NO_PAIR, compile_instance
from tests.solvers.builders import assert_valid, eligibility_table, instance


@st.composite
def months(draw):
    n_resources = draw(st.integers(1, 5))
    resources = [{"resource_id": f"R{r}", "capacity_units": draw(st.integers(0, 12)),
                  "region": draw(st.sampled_from(["eu", "us"]))} for r in range(n_resources)]
    n_requests = draw(st.integers(1, 14))
    requests = [{"request_id": f"Q{k}", "units": draw(st.integers(1, 6)), "priority": draw(st.integers(1, 5)),
                 "region": draw(st.sampled_from(["eu", "us"])), "must_allocate": draw(st.booleans()) and k % 4 == 0,
                 "preferred_resource_id": draw(st.sampled_from([None, "R0", "R1"]))} for k in range(n_requests)]
    explicit = draw(st.booleans())
    eligibility = None
    if explicit:
        rows = [(f"Q{k}", f"R{r}", draw(st.integers(0, 40)), draw(st.sampled_from([None, 1, 3])))
                for k in range(n_requests) for r in range(n_resources) if draw(st.booleans())]
        eligibility = eligibility_table(rows) if rows else None
    ids = [f"Q{k}" for k in range(n_requests)]
    exclusions = set(draw(st.lists(st.sampled_from(ids), max_size=2)))
    pins = {draw(st.sampled_from(ids)): f"R{draw(st.integers(0, n_resources - 1))}"} if draw(st.booleans()) else {}
    return instance(requests, resources, eligibility=eligibility, exclusions=exclusions, pins=pins)


def must_allocate_can_be_served(inst, params) -> bool:
    """Brute force, independent of the solver's search: can every must_allocate request (not excluded,
    pin kept) get one of its pairs beside the kept pins within capacity? At most 4 such requests."""
    c = compile_instance(inst, params)
    room = c.capacity - c.load(c.pinned_pair)
    must = [i for i in np.flatnonzero(c.must_allocate & ~c.excluded & ~c.pin_dropped) if c.pinned_pair[i] == NO_PAIR]
    options = [range(c.pair_request_start[i], c.pair_request_start[i + 1]) for i in must]
    for choice in itertools.product(*options):
        load = np.zeros(len(room), dtype=np.int64)
        np.add.at(load, c.pair_resource[list(choice)], c.pair_units[list(choice)])
        if (load <= room).all():
            return True
    return False


def test_the_brute_force_check_tells_a_feasible_month_from_an_infeasible_one():
    def month(capacity):
        return instance([{"request_id": f"M{k}", "units": 3, "must_allocate": True} for k in range(3)],
                        [{"resource_id": "R1", "capacity_units": capacity}])
    assert must_allocate_can_be_served(month(9), SolverParams())
    assert not must_allocate_can_be_served(month(8), SolverParams())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(months())
def test_every_proposal_on_a_random_month_satisfies_the_validators(inst):
    params = SolverParams(time_limit_s=2.0, gap_tolerance=0.0)
    try:
        proposal = solve(inst, params)
    except InfeasibleError as error:
        assert error.request_ids
        must = set(inst.requests.loc[inst.requests["must_allocate"], "request_id"])
        assert set(error.request_ids) <= must
        assert not must_allocate_can_be_served(inst, params), "the month was feasible"
        return
    assert_valid(inst, proposal)
    assert proposal.status == "OPTIMAL"
    assert validation.objective_value(inst, proposal.allocations, params.weights) == proposal.objective
    unallocated = proposal.allocations[proposal.allocations["resource_id"].isna()]
    assert unallocated["reason"].notna().all()
    allocated = proposal.allocations[proposal.allocations["resource_id"].notna()]
    assert allocated["reason"].isna().all()
