"""The LP relaxation bound (HiGHS) bounds every allocation from above and is tight when the LP is."""

from pathlib import Path

from solvers import SolverParams, solve
from solvers.bound import lp_bound
from solvers.gap_format import GAP_PARAMS_WEIGHTS, gap_instance
from tests.solvers.builders import instance

DATA = Path(__file__).parent.parent / "data" / "gap"


def test_the_lp_bound_is_at_least_the_proven_optimum_of_a_gap_instance():
    params = SolverParams(weights=GAP_PARAMS_WEIGHTS, time_limit_s=10.0, gap_tolerance=0.0)
    inst = gap_instance(DATA / "a05100", params)
    proposal = solve(inst, params)
    assert proposal.status == "OPTIMAL"
    assert proposal.objective <= lp_bound(inst, params) <= proposal.objective * 1.01


def test_the_lp_bound_equals_the_optimum_when_everything_fits():
    inst = instance([{"request_id": f"Q{k}", "units": 2, "priority": 1 + k % 5} for k in range(6)],
                    [{"resource_id": "R1", "capacity_units": 100}], pins={"Q0": "R1"})
    params = SolverParams(time_limit_s=5.0)
    assert lp_bound(inst, params) == solve(inst, params).objective
