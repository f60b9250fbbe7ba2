"""Independent parts solved separately merge into the figures of the direct solve."""

import numpy as np

from solvers import SolverParams, solve
from solvers.compiled import compile_instance
from solvers.components import component_labels
from solvers.decompose import merge_proposals, split_instance
from solvers.model import components
from tests.solvers.builders import assert_valid, instance


def three_region_month():
    requests = [{"request_id": f"Q{region}{k}", "region": region, "units": 1 + k % 3,
                 "priority": 1 + k % 5, "must_allocate": k == 0}
                for region in ("eu", "us", "ap") for k in range(12)]
    requests.append({"request_id": "ORPHAN", "region": "mars"})
    resources = [{"resource_id": f"R{region}{r}", "region": region, "capacity_units": 5 + r}
                 for region in ("eu", "us", "ap") for r in range(3)]
    return instance(requests, resources, exclusions={"Qus3"}, pins={"Qap2": "Rap1"})


def test_a_month_splits_into_one_part_per_service_and_region():
    parts = split_instance(three_region_month())
    assert len(parts) == 3
    assert sum(len(p.requests) for p in parts) == 37
    assert all(p.pairs["request_id"].isin(p.requests["request_id"]).all() for p in parts)


def test_merged_part_proposals_equal_the_direct_solve():
    inst = three_region_month()
    params = SolverParams(time_limit_s=5.0, gap_tolerance=0.0)
    direct = solve(inst, params)
    merged = merge_proposals(inst, [solve(part, params) for part in split_instance(inst)])
    assert_valid(inst, merged)
    assert merged.parts == 3 and merged.status == direct.status == "OPTIMAL"
    assert merged.objective == direct.objective and merged.bound == direct.bound
    assert list(merged.allocations["request_id"]) == list(direct.allocations["request_id"])
    assert (merged.allocations["status"] == direct.allocations["status"]).all()


def test_a_direct_solve_handles_each_service_and_region_as_its_own_component():
    proposal = solve(three_region_month(), SolverParams(time_limit_s=5.0, gap_tolerance=0.0))
    assert proposal.model_size["components"] == 3 and proposal.status == "OPTIMAL"


def test_the_pipeline_split_and_the_solver_components_are_the_same_partition():
    inst = three_region_month()
    c = compile_instance(inst, SolverParams())
    free = np.flatnonzero((c.pinned_pair == -1) & (np.diff(c.pair_request_start) > 0))
    solver_parts = {frozenset(c.request_ids[part].tolist()) for part in components(c, free)}
    split_parts = {frozenset(p.requests["request_id"]) for p in split_instance(inst)}
    # The split keeps every request (pinned, excluded, orphan); the solver's components only free ones.
    assert len(solver_parts) == len(split_parts) == 3
    for part in solver_parts:
        assert any(part <= whole for whole in split_parts)


def test_component_labels_number_components_by_first_request_and_mark_isolated_nodes():
    # Requests 0 and 2 share resource 1; request 1 uses resource 0; request 3 and resource 2 have no pair.
    labels = component_labels(4, 3, np.array([0, 2, 1]), np.array([1, 1, 0]))
    assert labels.count == 2
    assert labels.request.tolist() == [0, 1, 0, -1]
    assert labels.resource.tolist() == [1, 0, -1]


def test_merged_parts_report_the_weakest_stop_reason_and_the_month_churn():
    inst = three_region_month()
    params = SolverParams(time_limit_s=5.0, gap_tolerance=0.0)
    first = solve(inst, params)
    held = first.allocations.dropna(subset=["resource_id"])
    rerun = three_region_month()
    rerun.previous = dict(zip(held["request_id"], held["resource_id"]))
    parts = [solve(part, params) for part in split_instance(rerun)]
    merged = merge_proposals(rerun, parts)
    assert merged.stop_reason == solve(rerun, params).stop_reason
    assert merged.churn["previous_allocated"] == len(held) and merged.churn["requests_moved"] == 0
    assert set(merged.phase_seconds) >= {"compile", "search"}
