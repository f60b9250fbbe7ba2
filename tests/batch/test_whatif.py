"""What-if against the latest version: the figures before and after, the moves, the groups whose shortage
changes; read-only; and one clear refusal for each kind of bad input."""

from __future__ import annotations

import shutil

import pytest

from batch.demo_data import generate_month
from batch.inputs import load_landing
from batch.whatif import Change, WhatIfError, what_if
from bench.whatif import month_with_version
from resources.storage import ExportStore
from solvers import SolverParams, build_instance
from solvers.advice import capacity_advice

MONTH = "2026-12"
PARAMS = SolverParams(time_limit_s=10.0, seed=7)


@pytest.fixture(scope="module")
def solved_home(tmp_path_factory):
    """A 300-request demo month with version 1, made once for the module."""
    home = tmp_path_factory.mktemp("whatif") / "home"
    month_with_version(home, MONTH, generate_month(MONTH, requests=300, resources=25, seed=7), PARAMS)
    return home


@pytest.fixture
def home(solved_home, tmp_path):
    """A private copy of the solved month, so that a test may check that nothing changed."""
    copy = tmp_path / "home"
    shutil.copytree(solved_home, copy, symlinks=True)
    return copy


def _files(home) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(home)): (p.stat().st_size, p.stat().st_mtime_ns) for p in home.rglob("*")}


def _ask(home, **changes) -> dict:
    change = Change.parse(changes.get("capacity", []), changes.get("pins", []), changes.get("exclusions", []),
                          changes.get("sets", []))
    return what_if(home, ExportStore(home), MONTH, change)


def test_more_capacity_where_the_advice_points_serves_waiting_requests_and_writes_nothing(home):
    exports = ExportStore(home)
    rows = exports.read_version(MONTH, 1)
    tables = load_landing(home, MONTH)
    instance = build_instance(MONTH, tables.requests, tables.resources, availability=tables.availability,
                              params=PARAMS)
    place = capacity_advice(instance, PARAMS, rows).top(1).iloc[0]
    before = _files(home)
    answer = _ask(home, capacity=[f"{place['resource_id']}=+{int(place['holds_for_units']) + 5}"])
    assert _files(home) == before
    assert answer["after"]["objective"] > answer["before"]["objective"]
    assert answer["after"]["capacity_units"] == answer["before"]["capacity_units"] + int(place["holds_for_units"]) + 5
    assert answer["moves"]["count"] >= 1 and answer["parts"]["re_solved"] == 1 < answer["parts"]["of"]
    group = (place["service"], place["region"])
    changed = {(g["service"], g["region"]): g for g in answer["groups"]}
    assert changed[group]["unallocated_after"] < changed[group]["unallocated_before"]
    assert answer["solved"]["bound"] >= answer["solved"]["objective"]


def test_an_excluded_request_leaves_its_resource_and_is_listed_among_the_moves(home):
    rows = ExportStore(home).read_version(MONTH, 1)
    served = rows[rows["status"] == "allocated"].iloc[0]
    answer = _ask(home, exclusions=[served["request_id"]])
    moves = {m["request_id"]: m for m in answer["moves"]["list"]}
    assert moves[served["request_id"]] == {"request_id": served["request_id"], "from": served["resource_id"],
                                           "to": None}
    assert answer["after"]["objective"] < answer["before"]["objective"]


def test_a_pin_moves_the_request_to_the_pinned_resource(home):
    rows = ExportStore(home).read_version(MONTH, 1)
    tables = load_landing(home, MONTH)
    pairs = build_instance(MONTH, tables.requests, tables.resources, availability=tables.availability,
                           params=PARAMS).pairs
    served = rows[rows["status"] == "allocated"].set_index("request_id")["resource_id"]
    other = pairs[pairs["request_id"].isin(served.index)
                  & (pairs["resource_id"] != pairs["request_id"].map(served))].iloc[0]
    answer = _ask(home, pins=[f"{other['request_id']}={other['resource_id']}"])
    moves = {m["request_id"]: m for m in answer["moves"]["list"]}
    assert moves[other["request_id"]]["to"] == other["resource_id"]


@pytest.mark.parametrize(("changes", "words"), [
    ({"capacity": ["R9999=+3"]}, "--capacity names resource 'R9999', which is not in 2026-12's resources"),
    ({"capacity": ["R0001=-100000"]}, "--capacity R0001=-100000 would make its capacity negative"),
    ({"capacity": ["R0001=lots"]}, "--capacity 'R0001=lots' must look like RES=+N"),
    ({"exclusions": ["Q-NOPE"]}, "--exclude names request 'Q-NOPE', which is not in 2026-12's requests"),
    ({"pins": ["Q-NOPE=R0001"]}, "--pin names request 'Q-NOPE'"),
    ({"pins": ["{first}=R9999"]}, "--pin names resource 'R9999'"),
    ({"sets": ["speed=11"]}, "Unknown parameter 'speed'"),
    ({"sets": ["seed=-1"]}, "Parameter seed must be between"),
])
def test_bad_input_is_refused_in_one_sentence_and_writes_nothing(home, changes, words):
    first = ExportStore(home).read_version(MONTH, 1)["request_id"].iloc[0]
    changes = {key: [text.replace("{first}", first) for text in texts] for key, texts in changes.items()}
    before = _files(home)
    with pytest.raises(WhatIfError) as refused:
        _ask(home, **changes)
    assert words in str(refused.value) and "\n" not in str(refused.value)
    assert _files(home) == before


def test_a_pin_to_an_ineligible_resource_is_refused(home):
    rows = ExportStore(home).read_version(MONTH, 1)
    request = rows.iloc[0]
    resources = load_landing(home, MONTH).resources
    foreign = resources[resources["service"] != request["service"]].iloc[0]["resource_id"]
    with pytest.raises(WhatIfError, match=f"{foreign} is not eligible for {request['request_id']}"):
        _ask(home, pins=[f"{request['request_id']}={foreign}"])


def test_a_month_without_a_version_is_refused(home):
    with pytest.raises(WhatIfError, match="has no version yet"):
        what_if(home, ExportStore(home), "2027-01", Change())
