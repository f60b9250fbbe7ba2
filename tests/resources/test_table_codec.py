"""The table codec: values round-trip exactly through Parquet and tagged JSON, and nothing unsafe loads."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import sys
import uuid
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from upath import UPath

from resources.table_codec import VALUE_FILE, allow_module_prefix, dump_value, load_value
from solvers import solve
from tests.solvers.builders import FAST, instance

allow_module_prefix(__name__)


@dataclass
class Instance:
    """Shaped like the solver's AllocationInstance."""

    month: str
    requests: pd.DataFrame
    pins: dict[str, str] = field(default_factory=dict)
    exclusions: set[str] = field(default_factory=set)


@dataclass
class Plan:
    """Shaped like CapacityPlan and InputTables: nested dataclass, optional frames, scalars."""

    instance: Instance
    by_group: pd.DataFrame
    actuals: pd.DataFrame | None
    weights: dict[int, int]
    fingerprint: str
    expected: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Params:
    """Shaped like SolverParams: frozen, with a field outside __init__."""

    weights: dict[int, int]
    time_limit_s: float = 30.0
    deterministic_work: float | None = None
    label: str = field(default="default", init=False)


def assert_same(expected, actual, path: str = "value") -> None:
    """Equal values of the same types all the way down; frames with identical dtypes and index."""
    assert type(actual) is type(expected), f"{path}: {type(actual)} is not {type(expected)}"
    if isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(actual, expected, check_exact=True, check_index_type=True)
        assert list(actual.dtypes) == list(expected.dtypes), path
    elif dataclasses.is_dataclass(expected):
        for f in dataclasses.fields(expected):
            assert_same(getattr(expected, f.name), getattr(actual, f.name), f"{path}.{f.name}")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), path
        for i, (left, right) in enumerate(zip(expected, actual)):
            assert_same(left, right, f"{path}[{i}]")
    elif isinstance(expected, dict):
        assert [(type(k), k) for k in actual] == [(type(k), k) for k in expected], path
        for key in expected:
            assert_same(expected[key], actual[key], f"{path}[{key!r}]")
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual), path
    else:
        assert actual == expected, path
        if isinstance(expected, (dt.datetime, pd.Timestamp)):
            assert str(actual.tzinfo) == str(expected.tzinfo), path


def round_trip(value, folder: UPath):
    dump_value(value, folder)
    return load_value(folder)


def every_dtype_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "text": pd.Series(["a", None, "c"]),  # pandas 3 str dtype
        "string": pd.Series(["a", None, "c"], dtype="string"),
        "objects": pd.Series([1, None, 3], dtype=object),  # pandas would read it back as float64
        "object_text": pd.Series(["a", None, "c"], dtype=object),  # and this as str
        "object_na": pd.Series(["a", pd.NA, pd.NA], dtype=object),  # Parquet has one null for all three markers
        "object_nan": pd.Series([np.nan, "b", np.nan], dtype=object),
        "category": pd.Categorical(["x", "y", "x"]),
        "ordered": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"], ordered=True),
        "nullable_int": pd.array([1, None, 3], dtype="Int64"),
        "int8": np.array([1, -2, 3], dtype="int8"),
        "uint64": np.array([1, 2, 2**63], dtype="uint64"),
        "flag": [True, False, True],
        "nullable_flag": pd.array([True, None, False], dtype="boolean"),
        "number": [1.5, np.nan, -0.0],
        "when": pd.to_datetime(["2026-01-01", None, "2026-03-01 12:30"], format="ISO8601"),
        "when_paris": pd.to_datetime(["2026-01-01", "2026-02-01", None]).tz_localize("Europe/Paris"),
        "duration": pd.to_timedelta([1, 2, 3], unit="s"),
    })


def test_a_frame_with_every_supported_dtype_comes_back_with_the_same_dtypes(tmp_path):
    frame = every_dtype_frame()
    assert_same(frame, round_trip(frame, UPath(tmp_path / "v")))


@pytest.mark.parametrize("make_index", [
    lambda frame: frame.set_index("text"),
    lambda frame: frame.set_index(["category", "int8"]),
    lambda frame: frame.set_index("objects"),
    lambda frame: frame.iloc[1:],
    lambda frame: frame.rename_axis("row"),
], ids=["str", "multi", "object", "range_from_1", "named_range"])
def test_an_index_other_than_the_default_range_is_kept(tmp_path, make_index):
    frame = make_index(every_dtype_frame())
    assert_same(frame, round_trip(frame, UPath(tmp_path / "v")))


def test_a_frame_without_columns_keeps_its_rows(tmp_path):
    frame = pd.DataFrame(index=pd.Index(["a", "b"], name="id"))
    assert_same(frame, round_trip(frame, UPath(tmp_path / "v")))
    assert round_trip(pd.DataFrame(index=range(5)), UPath(tmp_path / "w")).shape == (5, 0)


COLUMN_STRATEGIES = {
    "str": st.lists(st.one_of(st.none(), st.text(max_size=5)), min_size=3, max_size=3).map(pd.Series),
    "int64": st.lists(st.integers(-(2**63), 2**63 - 1), min_size=3, max_size=3)
             .map(lambda v: pd.Series(v, dtype="int64")),
    "Int64": st.lists(st.one_of(st.none(), st.integers(-(2**40), 2**40)), min_size=3, max_size=3)
             .map(lambda v: pd.Series(v, dtype="Int64")),
    "float64": st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=3, max_size=3)
               .map(lambda v: pd.Series(v, dtype="float64")),
    "bool": st.lists(st.booleans(), min_size=3, max_size=3).map(lambda v: pd.Series(v, dtype="bool")),
    "category": st.lists(st.sampled_from(["a", "b", "c"]), min_size=3, max_size=3)
                .map(lambda v: pd.Series(v, dtype="category")),
    "datetime": st.lists(st.one_of(st.none(), st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2200, 1, 1))),
                         min_size=3, max_size=3).map(lambda v: pd.Series(pd.to_datetime(v), dtype="datetime64[us]")),
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(sorted(COLUMN_STRATEGIES)), min_size=1, max_size=5), data=st.data())
def test_random_frames_round_trip_with_their_dtypes(tmp_path, kinds, data):
    frame = pd.DataFrame({f"c{i}_{kind}": data.draw(COLUMN_STRATEGIES[kind]) for i, kind in enumerate(kinds)})
    assert_same(frame, round_trip(frame, UPath(tmp_path / uuid.uuid4().hex)))


HASHABLE = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=4),
                     st.floats(allow_nan=False), st.dates())
VALUES = st.recursive(
    st.one_of(HASHABLE, st.floats(), st.datetimes()),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.sets(HASHABLE, max_size=3),
        st.frozensets(HASHABLE, max_size=3),
        st.dictionaries(st.text(max_size=4), children, max_size=3),
        st.dictionaries(HASHABLE, children, max_size=3),
    ),
    max_leaves=12,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=VALUES)
def test_random_nested_values_round_trip_with_their_types(tmp_path, value):
    assert_same(value, round_trip(value, UPath(tmp_path / uuid.uuid4().hex)))


def test_a_dict_with_int_keys_keeps_int_keys(tmp_path):
    back = round_trip({1: 1000, 2: 300, 5: 1}, UPath(tmp_path / "v"))
    assert back == {1: 1000, 2: 300, 5: 1} and all(type(key) is int for key in back)


def test_sets_stay_sets_and_tuples_stay_tuples(tmp_path):
    value = {"blocked": {"r1", "r2"}, "frozen": frozenset({1, 2}), "pair": ("a", 1), "empty": set()}
    assert_same(value, round_trip(value, UPath(tmp_path / "v")))


def test_numpy_scalars_come_back_as_python_numbers(tmp_path):
    back = round_trip([np.int64(3), np.float64(0.5), np.bool_(True), np.str_("x")], UPath(tmp_path / "v"))
    assert_same([3, 0.5, True, "x"], back)


def test_timestamps_keep_their_zone(tmp_path):
    paris = ZoneInfo("Europe/Paris")
    value = [pd.Timestamp("2026-03-29 01:30:00.000000001", tz="Europe/Paris"), dt.datetime(2026, 1, 1, 9, tzinfo=paris),
             dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.date(2026, 2, 1), pd.Timestamp("2026-01-01")]
    assert_same(value, round_trip(value, UPath(tmp_path / "v")))


def nested_plan() -> Plan:
    requests = pd.DataFrame({"request_id": ["q1", "q2"], "units": [3, 4], "must": [True, False]})
    instance = Instance("2026-01", requests, pins={"q1": "r1"}, exclusions={"q9"})
    return Plan(instance, by_group=pd.DataFrame({"group": ["a"], "demand": pd.array([7], dtype="Int64")}),
                actuals=None, weights={1: 1000, 2: 300}, fingerprint="sha256:ab",
                expected={"parts": [instance, Params({1: 5}, deterministic_work=2.5)], "gap": float("inf")})


def test_nested_dataclasses_with_frames_round_trip_and_each_frame_is_its_own_parquet_file(tmp_path):
    plan = nested_plan()
    folder = UPath(tmp_path / "plan")
    assert dump_value(plan, folder) == ["000_instance.requests.parquet", "001_by_group.parquet",
                                        "002_expected_parts_0_.requests.parquet"]
    assert sorted(p.name for p in folder.iterdir()) == sorted([*dump_value(plan, folder), VALUE_FILE])
    assert_same(plan, load_value(folder))


def test_the_solvers_own_instance_proposal_and_params_round_trip(tmp_path):
    inst = instance([{"request_id": "Q1", "priority": 1, "units": 5}, {"request_id": "Q2", "priority": 4, "units": 5}],
                    [{"resource_id": "R1", "capacity_units": 5}], pins={"Q1": "R1"})
    inst.window_blocked = {"Q3"}
    value = {"instance": inst, "proposal": solve(inst, FAST), "params": FAST}
    assert_same(value, round_trip(value, UPath(tmp_path / "v")))


def test_a_frozen_dataclass_gets_its_fields_outside_init_back(tmp_path):
    params = Params({1: 5})
    object.__setattr__(params, "label", "tuned")
    back = round_trip(params, UPath(tmp_path / "v"))
    assert_same(params, back)
    assert back.label == "tuned"


def test_a_dataclass_from_a_module_outside_the_allowed_prefixes_is_refused(tmp_path):
    outsider = dataclasses.make_dataclass("Outsider", [("x", int)])
    outsider.__module__ = "plugins.outside"
    with pytest.raises(TypeError, match=r"plugins\.outside\.Outsider at value\[0\]"):
        dump_value([outsider(1)], UPath(tmp_path / "v"))
    assert not (tmp_path / "v").exists()


def handwritten(tmp_path, document) -> UPath:
    """A folder whose value.json holds `document`, as a tampered or foreign store would."""
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / VALUE_FILE).write_text(json.dumps(document))
    return UPath(folder)


def test_a_stored_class_outside_the_allowed_prefixes_is_never_imported(tmp_path):
    folder = handwritten(tmp_path, {"$dataclass": "antigravity:Fly", "fields": {}})
    with pytest.raises(TypeError, match="Refusing to load class 'antigravity:Fly'"):
        load_value(folder)
    assert "antigravity" not in sys.modules


@pytest.mark.parametrize(("document", "error"), [
    ({"$dataclass": "resources.table_codec:UPath", "fields": {}}, "no dataclass of that name"),
    ({"$dataclass": "batch.gone:Plan", "fields": {}}, "was the class moved"),
    ({"$dataclass": "batchfoo:Plan", "fields": {}}, "Refusing to load class 'batchfoo:Plan'"),
    ({"$table": "../elsewhere.parquet"}, "not a plain file name"),
    ({"$dataclass": f"{__name__}:Instance", "fields": {"month": "2026-01", "gone": 1}}, r"no fields \['gone'\]"),
    ({"$pickle": "gASVAAAAAAAAAAA="}, "Unknown tag"),
], ids=["not_a_dataclass", "moved_class", "lookalike_package", "table_outside_the_folder", "changed_class",
        "unknown_tag"])
def test_a_tampered_value_json_is_refused(tmp_path, document, error):
    with pytest.raises((TypeError, ValueError), match=error):
        load_value(handwritten(tmp_path, document))


def test_an_unencodable_value_is_refused_with_its_type_and_field_path_and_nothing_is_written(tmp_path):
    plan = nested_plan()
    plan.expected["callback"] = object()
    with pytest.raises(TypeError, match=r"builtins\.object at value\.expected\['callback'\]"):
        dump_value(plan, UPath(tmp_path / "v"))
    assert list(tmp_path.iterdir()) == []


def test_a_frame_parquet_cannot_hold_is_refused_with_its_field_path(tmp_path):
    plan = nested_plan()
    plan.instance.requests["odd"] = pd.Series([{1, 2}, "x"], dtype=object)
    with pytest.raises(TypeError, match=r"DataFrame at value\.instance\.requests as Parquet"):
        dump_value(plan, UPath(tmp_path / "v"))


def test_rewriting_a_local_folder_replaces_it_whole_and_leaves_no_staging_folder(tmp_path):
    folder = UPath(tmp_path / "v")
    dump_value(nested_plan(), folder)
    dump_value({"only": pd.DataFrame({"a": [1]})}, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["000_only.parquet", VALUE_FILE]
    assert [p.name for p in tmp_path.iterdir()] == ["v"]


def test_a_memory_filesystem_round_trips_and_rewrites_whole():
    folder = UPath(f"memory://codec-{uuid.uuid4().hex}/plan")
    plan = nested_plan()
    assert_same(plan, round_trip(plan, folder))
    assert_same([1, {2}], round_trip([1, {2}], folder))
    assert [p.name for p in folder.iterdir()] == [VALUE_FILE]


def test_a_remote_folder_without_value_json_reads_as_missing():
    folder = UPath(f"memory://codec-{uuid.uuid4().hex}/half")
    dump_value(pd.DataFrame({"a": [1]}), folder)
    (folder / VALUE_FILE).unlink()  # what a writer that died before its commit leaves behind
    with pytest.raises(FileNotFoundError, match="value.json is missing"):
        load_value(folder)
