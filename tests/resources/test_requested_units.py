"""Every exported row carries what its request asked for (requested_units), whatever it was given."""

from __future__ import annotations

import json

import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch.plan import allocation_rows as export_rows
from resources.allocation_rows import ALLOCATION_SCHEMA, SCHEMA_VERSION
from resources.export_paths import DATA_FILE, MANIFEST_FILE
from solvers import solve
from tests.resources.builders import MONTH, allocation_rows, caller_manifest
from tests.solvers.builders import FAST, instance


def test_an_unallocated_row_keeps_the_units_its_request_asked_for():
    inst = instance([{"request_id": "Q1", "units": 4}, {"request_id": "Q2", "units": 7}],
                    [{"resource_id": "R1", "capacity_units": 5}])

    rows = export_rows(MONTH, 1, inst, solve(inst, FAST)).set_index("request_id")

    assert rows.loc["Q1", ["units", "requested_units", "status"]].tolist() == [4, 4, "allocated"]
    assert rows.loc["Q2", ["units", "requested_units", "status"]].tolist() == [0, 7, "unallocated"]


def test_the_schema_version_is_bumped_and_requested_units_sits_beside_units():
    assert SCHEMA_VERSION == 2
    assert ALLOCATION_SCHEMA.metadata[b"batch_admin.schema_version"] == b"2"
    names = ALLOCATION_SCHEMA.names
    assert names[names.index("units") + 1] == "requested_units"


@pytest.mark.parametrize("fmt", ["parquet", "csv", "xlsx"])
def test_every_export_format_carries_requested_units_on_every_row(store, tmp_path, fmt):
    rows = allocation_rows([("r1", "A"), ("r2", None)])
    rows.loc[rows["resource_id"].isna(), "units"] = 0
    store.write_version(MONTH, 1, rows, caller_manifest())

    path = store.export(MONTH, fmt=fmt, out=tmp_path / f"all.{fmt}")["path"]

    if fmt == "parquet":
        got = pq.read_table(path).to_pandas()
    elif fmt == "csv":
        got = pd.read_csv(path)
    else:
        sheet = openpyxl.load_workbook(path)["allocations"]
        header, *body = sheet.iter_rows(values_only=True)
        got = pd.DataFrame(body, columns=header)
    assert got[["request_id", "units", "requested_units"]].values.tolist() == [["r1", 10, 10], ["r2", 0, 11]]
    assert json.loads((store.version_path(MONTH, 1) / MANIFEST_FILE).read_text())["schema_version"] == 2


def test_a_version_written_before_schema_2_reads_with_requested_units_empty(store):
    store.write_version(MONTH, 1, allocation_rows([("r1", "A")]), caller_manifest())
    data = store.version_path(MONTH, 1) / DATA_FILE
    old = pq.read_table(data).drop(["requested_units"])
    pq.write_table(old.replace_schema_metadata({"batch_admin.schema_version": "1"}), data)

    back = store.read_version(MONTH, 1)

    assert list(back.columns) == ALLOCATION_SCHEMA.names
    assert back["requested_units"].isna().all() and back["units"].tolist() == [10]
    assert pa.Table.from_pandas(back, preserve_index=False).num_rows == 1


def test_writing_a_row_without_requested_units_is_refused(store):
    rows = allocation_rows([("r1", "A")])
    rows["requested_units"] = None
    with pytest.raises(Exception, match="'requested_units' has 1 empty values but is required"):
        store.write_version(MONTH, 1, rows, caller_manifest())
