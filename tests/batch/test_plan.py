"""Pure steps between loader, solver and exports: packing parts, time shares, export rows."""

from __future__ import annotations

import pandas as pd
import pytest

from batch import plan as batch
from batch.demo_data import generate_month
from batch.params import MIN_PAIRS_PER_PART, max_parts
from solvers import SolverParams, build_instance, solve
from solvers.decompose import merge_proposals, split_instance
from solvers.validation import assert_no_resource_over_capacity, assert_only_eligible_pairs

MONTH = "2026-12"


@pytest.fixture(scope="module")
def instance():
    tables = generate_month(MONTH, requests=600, resources=60, seed=5)
    return build_instance(MONTH, tables["requests"], tables["resources"], availability=tables["availability"])


def test_a_demo_month_splits_into_independent_parts_by_service_and_region(instance):
    parts = split_instance(instance)
    assert len(parts) > 4
    for part in parts:
        assert set(part.pairs["request_id"]) <= set(part.requests["request_id"])
        assert set(part.pairs["resource_id"]) <= set(part.resources["resource_id"])
    assert sum(len(p.requests) for p in parts) == len(instance.requests)


@pytest.mark.parametrize("limit", [1, 2, 3, 100])
def test_packing_keeps_every_request_and_resource_once_within_the_limit(instance, limit):
    parts = split_instance(instance)
    packed = batch.pack_parts(parts, limit)
    assert len(packed) == min(limit, len(parts))
    for column, table in (("request_id", "requests"), ("resource_id", "resources")):
        ids = pd.concat([getattr(p, table)[column] for p in packed])
        assert ids.is_unique and set(ids) == set(getattr(instance, table)[column])
    assert sum(len(p.pairs) for p in packed) == len(instance.pairs)


def test_packing_balances_the_parts_by_size(instance):
    packed = batch.pack_parts(split_instance(instance), 3)
    sizes = sorted(len(p.pairs) + len(p.requests) for p in packed)
    largest_part = max(len(p.pairs) + len(p.requests) for p in split_instance(instance))
    assert sizes[-1] - sizes[0] <= largest_part


def test_time_shares_follow_size_and_never_drop_below_the_floor(instance):
    packed = batch.pack_parts(split_instance(instance), 4)
    shares = batch.time_shares(packed, 20.0)
    assert all(s >= 0.2 for s in shares)
    assert sum(shares) == pytest.approx(20.0, abs=len(shares))
    order = sorted(range(len(packed)), key=lambda i: len(packed[i].pairs) + len(packed[i].requests))
    assert [shares[i] for i in order] == sorted(shares)


def test_parts_solved_apart_merge_into_a_valid_month_with_one_row_per_request(instance):
    params = SolverParams(time_limit_s=2, seed=1)
    packed = batch.pack_parts(split_instance(instance), 3)
    merged = merge_proposals(instance, [solve(p, params) for p in packed])
    assert merged.allocations["request_id"].tolist() == instance.requests["request_id"].tolist()
    assert_no_resource_over_capacity(instance, merged.allocations)
    assert_only_eligible_pairs(instance, merged.allocations)
    assert merged.objective <= merged.bound + 1e-6
    rows = batch.allocation_rows(MONTH, 1, instance, merged)
    assert list(rows.columns) == batch.ROW_COLUMNS and len(rows) == len(instance.requests)
    assert (rows["resource_id"].isna() == (rows["status"].isin(["unallocated", "excluded"]))).all()


def test_a_month_fans_out_only_as_far_as_its_size_pays_unless_admins_set_max_parts():
    assert max_parts({}, pairs=30_000) == 1  # the demo month: one solve step
    assert max_parts({}, pairs=3 * MIN_PAIRS_PER_PART + 5) == 3
    assert max_parts({}, pairs=10**7) == 8
    assert max_parts({"max_parts": 3}, pairs=10) == 3
