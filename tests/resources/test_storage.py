"""Versioned Parquet exports: immutability, manifests, atomic writes, final copies and readers."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from batch.names import EXPORT_PAUSE_VAR
from resources.allocation_rows import ALLOCATION_SCHEMA, SCHEMA_VERSION
from resources.export_paths import DATA_FILE, MANIFEST_FILE
from resources.storage import ExportError, ExportStore
from tests.resources.builders import MONTH, allocation_rows, caller_manifest

REPO = Path(__file__).resolve().parents[2]


def write(store: ExportStore, month: str, specs, **manifest_fields):
    """Write the next version of a month from (request, resource) pairs."""
    version = store.next_version(month)
    return store.write_version(month, version, allocation_rows(specs), caller_manifest(**manifest_fields))


def test_versions_are_numbered_from_one_and_listed_in_order(store):
    assert store.next_version(MONTH) == 1
    assert store.latest_version(MONTH) is None
    write(store, MONTH, [("r1", "A")])
    write(store, MONTH, [("r1", "B")])
    assert store.versions(MONTH) == [1, 2]
    assert store.latest_version(MONTH) == 2
    assert store.next_version(MONTH) == 3
    assert store.months() == [MONTH]


def test_a_written_version_reads_back_with_the_schema_types(store):
    rows = allocation_rows([("r2", "A"), ("r1", None)])
    store.write_version(MONTH, 1, rows, caller_manifest())
    back = store.read_version(MONTH, 1)
    assert list(back.columns) == ALLOCATION_SCHEMA.names
    assert back["request_id"].tolist() == ["r1", "r2"]  # stored sorted by request
    assert (back["month"] == MONTH).all() and (back["version"] == 1).all()
    assert str(back["version"].dtype) == "int32"
    assert str(back["priority"].dtype) == "int16"
    assert back["resource_id"].isna().tolist() == [True, False]


def test_an_existing_version_is_never_overwritten(store):
    write(store, MONTH, [("r1", "A")])
    before = (store.version_path(MONTH, 1) / DATA_FILE).read_bytes()
    with pytest.raises(ExportError, match="immutable"):
        store.write_version(MONTH, 1, allocation_rows([("r1", "Z")]), caller_manifest())
    assert (store.version_path(MONTH, 1) / DATA_FILE).read_bytes() == before


def test_the_manifest_holds_the_callers_fields_and_the_stores(store):
    info = write(store, MONTH, [("r1", "A"), ("r2", None)])
    manifest = store.manifest(MONTH, 1)
    assert manifest == info.manifest
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert (manifest["month"], manifest["version"], manifest["row_count"]) == (MONTH, 1, 2)
    assert manifest["status"] == "proposed"
    for field in ("run_id", "actor", "note", "parameters", "input_fingerprint", "solver", "metrics", "created_at"):
        assert field in manifest
    assert set(manifest["files"]) == {DATA_FILE}


def test_manifest_checksums_match_the_files_and_detect_tampering(store):
    write(store, MONTH, [("r1", "A")])
    path = store.version_path(MONTH, 1)
    assert store.verify(MONTH, 1)
    data = bytearray((path / DATA_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / DATA_FILE).write_bytes(bytes(data))
    assert not store.verify(MONTH, 1)


def test_an_unlisted_file_in_a_version_fails_verification(store):
    write(store, MONTH, [("r1", "A")])
    (store.version_path(MONTH, 1) / "extra.parquet").write_bytes(b"x")
    assert not store.verify(MONTH, 1)


@pytest.mark.parametrize("field", ["version", "files", "row_count", "schema_version"])
def test_a_caller_cannot_set_fields_the_store_owns(store, field):
    with pytest.raises(ExportError, match="belong to the store"):
        store.write_version(MONTH, 1, allocation_rows([("r1", "A")]), caller_manifest(**{field: 9}))


def test_a_version_cannot_claim_to_be_final(store):
    with pytest.raises(ExportError, match="must be 'proposed'"):
        store.write_version(MONTH, 1, allocation_rows([("r1", "A")]), caller_manifest(status="final"))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda rows: rows.drop(columns="cost"), "missing \\['cost'\\]"),
        (lambda rows: rows.assign(extra=1), "unexpected \\['extra'\\]"),
        (lambda rows: rows.assign(status="lost"), "Unknown status"),
        (lambda rows: rows.assign(reason=None, resource_id=None, status="unallocated"), "needs a reason"),
        (lambda rows: rows.assign(resource_id=None), "exactly when allocated"),
        (lambda rows: rows.assign(request_id="same"), "unique"),
        (lambda rows: rows.assign(customer_id=None), "'customer_id' has 2 empty"),
        (lambda rows: rows.assign(priority=100_000), "'priority' cannot be stored"),
        (lambda rows: rows.assign(month="2025-04"), "disagrees"),
    ],
)
def test_rows_breaking_the_contract_are_refused_with_a_clear_error(store, change, message):
    rows = change(allocation_rows([("r1", "A"), ("r2", "B")]))
    with pytest.raises(ExportError, match=message):
        store.write_version(MONTH, 1, rows, caller_manifest())
    assert store.versions(MONTH) == []
    assert store.next_version(MONTH) == 1  # nothing was reserved by a refused write


@pytest.mark.parametrize("month", ["2025-13", "2025-3", "25-03", "../x", "", "2026-12\n", "２０２６-12"])
def test_a_malformed_month_is_refused(store, month):
    with pytest.raises(ExportError, match="YYYY-MM"):
        store.versions(month)


def test_reading_a_missing_version_is_a_clear_error(store):
    with pytest.raises(ExportError, match="does not exist"):
        store.read_version(MONTH, 4)


def test_the_parquet_schema_is_the_same_for_every_version_and_month(store):
    write(store, MONTH, [("r1", "A"), ("r2", None)])
    write(store, MONTH, [("r1", None)])
    write(store, "2025-04", [("x", "B")])
    schemas = [
        pq.read_schema(store.version_path(month, version) / DATA_FILE)
        for month, version in [(MONTH, 1), (MONTH, 2), ("2025-04", 1)]
    ]
    for schema in schemas:
        assert schema.equals(ALLOCATION_SCHEMA, check_metadata=True)


def test_rows_with_nullable_and_numpy_types_are_accepted(store):
    rows = allocation_rows([("r1", "A"), ("r2", None)])
    rows["units"] = rows["units"].astype("Int64")
    rows["priority"] = rows["priority"].astype("int64")
    rows["resource_id"] = rows["resource_id"].astype(object)
    store.write_version(MONTH, 1, rows, caller_manifest())
    assert store.read_version(MONTH, 1)["units"].tolist() == [10, 11]


# --------------------------------------------------------------- atomicity

WRITER = """
import sys
from pathlib import Path
from resources.storage import ExportStore
from tests.resources.builders import allocation_rows, caller_manifest
store = ExportStore(Path(sys.argv[1]))
{action}
"""


def start_writer(home: Path, action: str) -> subprocess.Popen:
    """A child process that writes through the store and pauses before the manifest."""
    env = {**os.environ, EXPORT_PAUSE_VAR: "60", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", WRITER.format(action=action), str(home)], cwd=REPO, env=env)


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the writer never reached the pause"
        time.sleep(0.05)


def duckdb_versions(home: Path) -> list[tuple[str, int]]:
    pattern = str(home / "exports" / "allocations" / "*" / "*" / "*.parquet")
    if not glob.glob(pattern):
        return []
    sql = "SELECT DISTINCT month, version FROM read_parquet(?, hive_partitioning = true) ORDER BY ALL"
    return duckdb.sql(sql, params=[pattern]).fetchall()


def test_a_version_killed_mid_write_never_becomes_visible_and_the_next_write_succeeds(store):
    write(store, MONTH, [("r1", "A")])
    child = start_writer(
        store.home,
        "store.write_version('2025-03', 2, allocation_rows([('r1', 'B')]), caller_manifest())",
    )
    staged = store.staging_dir / f"month={MONTH}" / "version=2" / DATA_FILE
    try:
        wait_for(staged.exists)
        time.sleep(0.3)
        assert child.poll() is None
        assert store.versions(MONTH) == [1]
        assert duckdb_versions(store.home) == [(MONTH, 1)]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert store.versions(MONTH) == [1]
    assert store.latest_version(MONTH) == 1
    assert duckdb_versions(store.home) == [(MONTH, 1)]
    assert store.next_version(MONTH) == 3  # the interrupted number is never reused
    with pytest.raises(ExportError, match="reserved"):
        store.write_version(MONTH, 2, allocation_rows([("r1", "B")]), caller_manifest())
    write(store, MONTH, [("r1", "C")])
    assert store.versions(MONTH) == [1, 3]
    assert store.verify(MONTH, 3)
    assert duckdb_versions(store.home) == [(MONTH, 1), (MONTH, 3)]


def test_a_finalization_killed_mid_write_leaves_the_previous_final_copy_intact(store):
    write(store, MONTH, [("r1", "A")])
    write(store, MONTH, [("r1", "B")])
    store.write_final(MONTH, 1, {"finalized_by": "alice", "approved_by": "bob"})
    child = start_writer(store.home, "store.write_final('2025-03', 2, {'finalized_by': 'alice', 'approved_by': 'bob'})")
    try:
        wait_for(lambda: any(store.final_store_dir.glob(f"month={MONTH}/v2-*/{DATA_FILE}")))
        time.sleep(0.3)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert store.final_manifest(MONTH)["version"] == 1
    assert store.verify_final(MONTH)
    assert store.read_final(MONTH)["resource_id"].tolist() == ["A"]
    store.write_final(MONTH, 2, {"finalized_by": "alice", "approved_by": "bob"})
    assert store.final_manifest(MONTH)["version"] == 2


# -------------------------------------------------------------------- final


def test_finalizing_publishes_an_identical_copy_with_a_final_manifest(store):
    write(store, MONTH, [("r1", "A"), ("r2", None)])
    info = store.write_final(MONTH, 1, {"finalized_by": "alice", "approved_by": "bob", "finalized_at": "2025-04-02T10:00:00+00:00"})
    manifest = store.final_manifest(MONTH)
    assert info.path == store.final_path(MONTH)
    assert manifest["status"] == "final"
    assert (manifest["finalized_by"], manifest["approved_by"]) == ("alice", "bob")
    assert manifest["finalized_at"] == "2025-04-02T10:00:00+00:00"
    assert manifest["files"] == store.manifest(MONTH, 1)["files"]
    assert store.manifest(MONTH, 1)["status"] == "proposed"  # the version itself stays immutable
    pd.testing.assert_frame_equal(store.read_final(MONTH), store.read_version(MONTH, 1))
    assert store.verify_final(MONTH)


def test_refinalizing_replaces_the_final_copy_and_leaves_no_stale_copy(store):
    write(store, MONTH, [("r1", "A")])
    write(store, MONTH, [("r1", "B")])
    store.write_final(MONTH, 1, {"finalized_by": "alice", "approved_by": "bob"})
    store.write_final(MONTH, 2, {"finalized_by": "alice", "approved_by": "bob"})
    assert store.final_manifest(MONTH)["version"] == 2
    assert store.read_final(MONTH)["resource_id"].tolist() == ["B"]
    assert len(list(store.final_store_dir.glob(f"month={MONTH}/v*"))) == 1


def test_a_month_without_final_has_no_final_manifest(store):
    assert store.final_manifest(MONTH) is None
    with pytest.raises(ExportError, match="no final allocation"):
        store.read_final(MONTH)


def test_a_tampered_version_cannot_be_finalized(store):
    write(store, MONTH, [("r1", "A")])
    (store.version_path(MONTH, 1) / DATA_FILE).write_bytes(b"not parquet")
    with pytest.raises(ExportError, match="checksums"):
        store.write_final(MONTH, 1, {"finalized_by": "alice", "approved_by": "bob"})


# ------------------------------------------------------------------ readers


@pytest.fixture
def two_months(store) -> ExportStore:
    """Two months with two versions each and a final copy of one."""
    write(store, MONTH, [("r1", "A"), ("r2", None)])
    write(store, MONTH, [("r1", "B"), ("r2", "A"), ("r3", None)])
    write(store, "2025-04", [("q1", "A")])
    write(store, "2025-04", [("q1", "C")])
    store.write_final(MONTH, 1, {"finalized_by": "alice", "approved_by": "bob"})
    # An interrupted write must stay invisible to every reader below.
    staged = store.staging_dir / "month=2025-04" / "version=3"
    staged.mkdir(parents=True)
    pq.write_table(pq.read_table(store.version_path("2025-04", 1) / DATA_FILE), staged / DATA_FILE)
    return store


def test_duckdb_hive_glob_returns_month_and_version_from_the_layout(two_months):
    pattern = str(two_months.root / "allocations" / "*" / "*" / "*.parquet")
    relation = duckdb.sql("SELECT * FROM read_parquet(?, hive_partitioning = true)", params=[pattern])
    # The file's own month/version columns coincide with the directories; DuckDB keeps one of each.
    assert relation.columns == ALLOCATION_SCHEMA.names
    counts = duckdb.sql(
        "SELECT month, version, count(*) FROM read_parquet(?, hive_partitioning = true) GROUP BY ALL ORDER BY ALL",
        params=[pattern],
    ).fetchall()
    assert counts == [(MONTH, 1, 2), (MONTH, 2, 3), ("2025-04", 1, 1), ("2025-04", 2, 1)]


def test_duckdb_reads_the_latest_version_of_a_month(two_months):
    pattern = str(two_months.root / "allocations" / "*" / "*" / "*.parquet")
    sql = """
        SELECT request_id, resource_id FROM read_parquet($glob, hive_partitioning = true)
        WHERE month = $month
          AND version = (SELECT max(version) FROM read_parquet($glob, hive_partitioning = true) WHERE month = $month)
        ORDER BY request_id
    """
    rows = duckdb.sql(sql, params={"glob": pattern, "month": MONTH}).fetchall()
    assert rows == [("r1", "B"), ("r2", "A"), ("r3", None)]


def test_duckdb_reads_the_final_copies(two_months):
    pattern = str(two_months.root / "final" / "*" / "*.parquet")
    rows = duckdb.sql(
        "SELECT month, version, request_id FROM read_parquet(?, hive_partitioning = true) ORDER BY ALL", params=[pattern]
    ).fetchall()
    assert rows == [(MONTH, 1, "r1"), (MONTH, 1, "r2")]


def test_pandas_reads_a_given_version_and_all_versions(two_months):
    one = pd.read_parquet(two_months.version_path(MONTH, 2) / DATA_FILE)
    assert one["request_id"].tolist() == ["r1", "r2", "r3"]
    files = sorted(glob.glob(str(two_months.root / "allocations" / "*" / "*" / "*.parquet")))
    every = pd.read_parquet(files, partitioning=None)
    assert sorted(set(zip(every["month"], every["version"]))) == [(MONTH, 1), (MONTH, 2), ("2025-04", 1), ("2025-04", 2)]


def test_pyarrow_dataset_reads_every_complete_version(two_months):
    files = sorted(glob.glob(str(two_months.root / "allocations" / "*" / "*" / "*.parquet")))
    dataset = ds.dataset(files, format="parquet")
    table = dataset.to_table(filter=(ds.field("month") == MONTH) & (ds.field("version") == 2))
    assert table.schema.equals(ALLOCATION_SCHEMA)
    assert table.num_rows == 3


def test_polars_reads_with_hive_partitioning(two_months):
    pattern = str(two_months.root / "allocations" / "*" / "*" / "*.parquet")
    frame = pl.read_parquet(pattern, hive_partitioning=True)
    latest = frame.filter(pl.col("month") == MONTH).filter(pl.col("version") == pl.col("version").max())
    assert latest["request_id"].sort().to_list() == ["r1", "r2", "r3"]
    assert frame.select("month", "version").unique().height == 4


def test_manifests_are_plain_json_next_to_the_data(two_months):
    manifest = json.loads((two_months.version_path(MONTH, 2) / MANIFEST_FILE).read_text())
    assert manifest["version"] == 2 and manifest["row_count"] == 3
