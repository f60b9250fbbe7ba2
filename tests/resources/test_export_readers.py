"""The readers of docs/exports.md read a home holding versions of schema 1 and 2 alike."""

from __future__ import annotations

import glob

import duckdb
import pandas as pd
import polars as pl
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from resources.allocation_rows import ALLOCATION_SCHEMA
from resources.export_paths import DATA_FILE
from tests.resources.builders import MONTH, allocation_rows, caller_manifest

EXPECTED = [(1, "r1", None), (1, "r2", None), (2, "r1", 10), (2, "r2", 11)]


@pytest.fixture
def mixed(store):
    """Version 1 written as schema 1 (no requested_units), version 2 as schema 2."""
    for version in (1, 2):
        store.write_version(MONTH, version, allocation_rows([("r1", "A"), ("r2", None)]), caller_manifest())
    data = store.version_path(MONTH, 1) / DATA_FILE
    old = pq.read_table(data).drop(["requested_units"])
    pq.write_table(old.replace_schema_metadata({"batch_admin.schema_version": "1"}), data)
    return str(store.home / "exports" / "allocations" / "*" / "*" / "*.parquet")


def rows(frame: pd.DataFrame) -> list[tuple]:
    frame = frame.sort_values(["version", "request_id"])
    return [(int(v), r, None if pd.isna(u) else int(u))
            for v, r, u in zip(frame["version"], frame["request_id"], frame["requested_units"])]


def newest_schema_last(pattern: str) -> list[str]:
    return sorted(glob.glob(pattern), key=lambda f: pq.read_metadata(f).metadata[b"batch_admin.schema_version"])


def test_duckdb_reads_both_schemas_by_name(mixed):
    frame = duckdb.sql("SELECT * FROM read_parquet($glob, hive_partitioning = true, union_by_name = true)",
                       params={"glob": mixed}).df()
    assert rows(frame) == EXPECTED


def test_pandas_and_pyarrow_read_both_schemas_with_the_newest_schema(mixed):
    files = newest_schema_last(mixed)
    every = pd.read_parquet(files, partitioning=None, schema=pq.read_schema(files[-1]))
    table = ds.dataset(files, format="parquet", schema=pq.read_schema(files[-1])).to_table()
    assert rows(every) == rows(table.to_pandas()) == EXPECTED


def test_polars_reads_both_schemas_with_the_store_schema(mixed):
    schema = pl.from_arrow(ALLOCATION_SCHEMA.empty_table()).schema
    frame = pl.read_parquet(mixed, hive_partitioning=True, schema=schema, missing_columns="insert")
    assert rows(frame.to_pandas()) == EXPECTED
