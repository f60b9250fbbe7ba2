"""Proven optima on small public GAP instances, mapped onto the input contract."""

from pathlib import Path

import pytest

from solvers import SolverParams, solve
from solvers.gap_format import GAP_PARAMS_WEIGHTS, gap_cost, gap_instance
from tests.solvers.builders import assert_valid

DATA = Path(__file__).parent.parent / "data" / "gap"


@pytest.mark.parametrize("name, optimum", [("gap1-0", 261), ("gap2-0", 277), ("a05100", 1698)])
def test_the_solver_proves_the_known_optimum_of_a_small_gap_instance(name, optimum):
    inst = gap_instance(DATA / name)
    proposal = solve(inst, SolverParams(weights=GAP_PARAMS_WEIGHTS, time_limit_s=20.0, gap_tolerance=0.0))
    assert_valid(inst, proposal)
    assert proposal.status == "OPTIMAL"
    assert gap_cost(inst, proposal.allocations) == optimum
