"""The Parquet IO manager under real Dagster runs: partitions, a graph asset with dynamic parts, no pickles."""

# No `from __future__ import annotations`: Dagster reads the context annotations when decorating.
import uuid
from dataclasses import dataclass

import dagster as dg
import pandas as pd
import pytest
from upath import UPath

from resources.io_manager import ParquetIOManagerResource
from resources.table_codec import VALUE_FILE, allow_module_prefix, load_value
from tests.resources.test_table_codec import assert_same

allow_module_prefix(__name__)

MONTHS = dg.StaticPartitionsDefinition(["2026-01", "2026-02"])
PICKLE_MAGIC = b"\x80"


@dataclass
class Landed:
    """Shaped like InputTables: frames, an optional frame, int-keyed weights, a set."""

    month: str
    requests: pd.DataFrame
    actuals: pd.DataFrame | None
    weights: dict[int, int]
    blocked: set[str]


@dataclass
class Task:
    """Shaped like PartTask."""

    index: int
    requests: pd.DataFrame


@dataclass
class Solved:
    """Shaped like PartResult."""

    index: int
    allocations: pd.DataFrame
    usage: dict


def landed_for(month: str) -> Landed:
    """The tables `landed` produces for `month`."""
    requests = pd.DataFrame({"request_id": [f"{month}-q{i}" for i in range(6)],
                             "units": pd.array(range(6), dtype="Int64"),
                             "service": pd.Categorical(["cpu", "gpu"] * 3)})
    return Landed(month, requests, None, {1: 1000, 2: 300}, {"q9"})


@dg.asset(partitions_def=MONTHS)
def landed(context: dg.AssetExecutionContext) -> Landed:
    return landed_for(context.partition_key)


@dg.asset(partitions_def=MONTHS)
def planned(context: dg.AssetExecutionContext, landed: Landed) -> Landed:
    assert_same(landed_for(context.partition_key), landed)
    return landed


@dg.op(out=dg.DynamicOut(Task))
def split(planned: Landed):
    for index in range(3):
        yield dg.DynamicOutput(Task(index, planned.requests.iloc[index::3]), mapping_key=f"part_{index}")


@dg.op
def solve(task: Task) -> Solved:
    return Solved(task.index, task.requests.assign(resource_id="r1"), {"seconds": 0.5, "peak_mb": 12})


@dg.op
def combine(results: list[Solved]) -> pd.DataFrame:
    assert [type(result) for result in results] == [Solved] * 3
    return pd.concat([result.allocations for result in sorted(results, key=lambda r: r.index)])


@dg.graph_asset(partitions_def=MONTHS)
def allocations(planned: Landed) -> pd.DataFrame:
    return combine(split(planned).map(solve).collect())


@dg.asset
def year(planned: dict[str, Landed]) -> dict[str, int]:
    return {month: len(tables.requests) for month, tables in planned.items()}


ASSETS = [landed, planned, allocations]


def expected_allocations(month: str) -> pd.DataFrame:
    """What the graph asset should produce for `month`: the parts in order, each allocated."""
    requests = landed_for(month).requests
    return pd.concat([requests.iloc[i::3] for i in range(3)]).assign(resource_id="r1")


def files_under(base: UPath) -> list[UPath]:
    """Every file below `base`, on any filesystem."""
    return [path for path in base.rglob("*") if path.is_file()]


def pickles_under(path) -> list[UPath]:
    """Files whose first byte is the pickle protocol marker."""
    pickles = []
    for file in files_under(UPath(path)):
        with file.open("rb") as handle:
            if handle.read(1) == PICKLE_MAGIC:
                pickles.append(file)
    return pickles


@pytest.fixture(params=["local", "memory"])
def base(request, tmp_path) -> UPath:
    """An empty IO base: a local folder or a fresh fsspec memory URL."""
    return UPath(tmp_path / "io") if request.param == "local" else UPath(f"memory://io-{uuid.uuid4().hex}")


def test_a_partitioned_chain_and_a_graph_asset_pass_dataclasses_as_parquet_folders(base):
    resources = {"io_manager": ParquetIOManagerResource(base_url=str(base))}
    result = dg.materialize(ASSETS, partition_key="2026-01", resources=resources)
    assert result.success

    assert_same(landed_for("2026-01"), load_value(base / "landed" / "2026-01"))
    assert_same(expected_allocations("2026-01"), load_value(base / "allocations" / "2026-01"))
    names = {path.name for path in files_under(base / "planned" / "2026-01")}
    assert names == {VALUE_FILE, "000_requests.parquet"}
    # The dynamic parts are op outputs: <run id>/<step key>/result/<mapping key>, one folder each.
    split_output = base / result.run_id / "allocations.split" / "result"
    assert sorted(part.name for part in split_output.iterdir()) == ["part_0", "part_1", "part_2"]
    solved = load_value(base / result.run_id / "allocations.solve[part_1]" / "result")
    expected_part = landed_for("2026-01").requests.iloc[1::3].assign(resource_id="r1")
    assert_same(Solved(1, expected_part, {"seconds": 0.5, "peak_mb": 12}), solved)
    assert pickles_under(base) == []


def test_an_unpartitioned_asset_gets_every_month_as_a_dict(base):
    resources = {"io_manager": ParquetIOManagerResource(base_url=str(base))}
    for month in MONTHS.get_partition_keys():
        assert dg.materialize([landed, planned], partition_key=month, resources=resources).success
    result = dg.materialize([landed, planned, year], selection=[year], resources=resources)
    assert result.success
    assert load_value(base / "year") == {"2026-01": 6, "2026-02": 6}


def materialize_in_home(home, **resources) -> None:
    """One partition of the chain on a persistent instance whose DAGSTER_HOME is `home`."""
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        assert dg.materialize(ASSETS, partition_key="2026-02", instance=instance, resources=resources).success


def test_a_run_leaves_no_pickle_under_dagster_home(tmp_path):
    materialize_in_home(tmp_path / "home", io_manager=ParquetIOManagerResource(base_url=str(tmp_path / "io")))
    assert files_under(UPath(tmp_path / "home")) and pickles_under(tmp_path / "home") == []
    assert pickles_under(tmp_path / "io") == []
    # The same run on Dagster's default IO manager does leave pickles: the check above can fail.
    materialize_in_home(tmp_path / "default_home")
    assert pickles_under(tmp_path / "default_home")


@pytest.mark.parametrize("value", ["", "  "], ids=["empty", "blank"])
def test_an_empty_base_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("BATCH_ADMIN_IO_BASE", value)
    resources = {"io_manager": ParquetIOManagerResource(base_url=dg.EnvVar("BATCH_ADMIN_IO_BASE"))}
    with pytest.raises(dg.DagsterResourceFunctionError) as raised:
        dg.materialize(ASSETS, partition_key="2026-01", resources=resources)
    assert "BATCH_ADMIN_IO_BASE is not set:" in str(raised.value.__cause__)


def test_a_missing_base_variable_is_refused_naming_it(monkeypatch):
    monkeypatch.delenv("BATCH_ADMIN_IO_BASE", raising=False)
    resources = {"io_manager": ParquetIOManagerResource(base_url=dg.EnvVar("BATCH_ADMIN_IO_BASE"))}
    with pytest.raises(dg.DagsterInvalidConfigError, match="BATCH_ADMIN_IO_BASE"):
        dg.materialize(ASSETS, partition_key="2026-01", resources=resources)


def test_storage_options_reach_the_filesystem(tmp_path):
    resource = ParquetIOManagerResource(base_url=f"file://{tmp_path}", storage_options={"auto_mkdir": False})
    manager = resource.create_io_manager(dg.build_init_resource_context())
    assert manager.storage_options == {"auto_mkdir": False}
    assert manager.fs.auto_mkdir is False


@dg.asset(partitions_def=MONTHS)
def changed(landed: Landed) -> Landed:
    """Hands the landed value on after changing one value of its table in place."""
    landed.requests.loc[0, "units"] = 99
    return landed


def test_a_table_handed_on_unchanged_is_the_file_it_came_from_and_a_changed_one_is_written(base):
    resources = {"io_manager": ParquetIOManagerResource(base_url=str(base))}
    assert dg.materialize([landed, planned, changed], partition_key="2026-01", resources=resources).success
    first = base / "landed" / "2026-01" / "000_requests.parquet"
    handed_on = base / "planned" / "2026-01" / "000_requests.parquet"

    assert handed_on.read_bytes() == first.read_bytes()
    if base.protocol in ("", "file", "local"):
        assert handed_on.stat().st_ino == first.stat().st_ino  # one table, written once
    assert load_value(base / "changed" / "2026-01").requests["units"].tolist() == [99, 1, 2, 3, 4, 5]
    assert_same(landed_for("2026-01"), load_value(base / "planned" / "2026-01"))
    # A later run replaces the upstream folder; the value handed on keeps its own table.
    assert dg.materialize([landed], partition_key="2026-01", resources=resources).success
    assert_same(landed_for("2026-01"), load_value(base / "planned" / "2026-01"))
