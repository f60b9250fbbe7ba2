"""File exports of a month: formats, filters, spreadsheet safety and comparisons of versions."""

from __future__ import annotations

import csv
import json
import re

import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest

from resources.cells import FORMULA_PREFIXES, sanitize_cell
from resources.storage import ALLOCATION_SCHEMA, ExportError
from tests.resources.builders import MONTH, allocation_rows, caller_manifest

XLSX_SHEETS = ["summary", "utilization", "reasons", "per_resource", "unallocated", "allocations"]


def mixed_rows() -> pd.DataFrame:
    """Two services, three resources, every status, and text that looks like formulas."""
    compute = allocation_rows([("r1", "A"), ("r2", "A"), ("r3", None), ("r4", "B")], service="compute")
    storage = allocation_rows([("s1", "C"), ("s2", None)], service="storage", region="us")
    rows = pd.concat([compute, storage], ignore_index=True)
    rows.loc[rows["request_id"] == "r4", "status"] = "pinned"
    rows.loc[rows["request_id"] == "s2", ["status", "reason"]] = ["excluded", "excluded"]
    rows.loc[rows["request_id"] == "r1", "customer_id"] = "=HYPERLINK(\"http://x\",\"y\")"
    rows.loc[rows["request_id"] == "r2", "customer_id"] = "-2+3"
    rows.loc[rows["request_id"] == "r3", "customer_id"] = "@SUM(A1)"
    rows.loc[rows["request_id"] == "s1", "customer_id"] = "\t=1"
    return rows


@pytest.fixture
def month(store):
    """A month with one version of mixed rows."""
    store.write_version(MONTH, 1, mixed_rows(), caller_manifest(note="+note that looks like a formula"))
    return store


def read_csv_cells(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


# ------------------------------------------------------------------ formats


def test_a_parquet_export_equals_the_version(month, tmp_path):
    result = month.export(MONTH, fmt="parquet", out=tmp_path / "out" / "all.parquet")
    assert result["rows"] == 6 and result["format"] == "parquet" and result["version"] == 1
    table = pq.read_table(result["path"])
    assert table.schema.equals(ALLOCATION_SCHEMA)
    pd.testing.assert_frame_equal(table.to_pandas(), month.read_version(MONTH, 1))


def test_a_csv_export_reads_back_with_pandas(month, tmp_path):
    result = month.export(MONTH, fmt="csv", out=tmp_path / "all.csv")
    frame = pd.read_csv(result["path"], keep_default_na=False)
    assert list(frame.columns) == ALLOCATION_SCHEMA.names
    assert len(frame) == result["rows"] == 6
    assert frame["units"].dtype.kind == "i" and frame["cost"].dtype.kind == "i"


def test_an_xlsx_export_has_the_sheets_styled_frozen_and_filtered(month, tmp_path):
    result = month.export(MONTH, fmt="xlsx", out=tmp_path / "all.xlsx")
    book = openpyxl.load_workbook(result["path"])
    assert book.sheetnames == XLSX_SHEETS
    for sheet in book.worksheets:
        header = int(sheet.freeze_panes[1:]) - 1  # the row above the frozen pane
        assert sheet.auto_filter.ref.startswith(f"A{header}")
        assert sheet.cell(header, 1).font.b
        assert sheet.column_dimensions["A"].width >= 8
    allocations = book["allocations"]
    assert [c.value for c in allocations[1]] == ALLOCATION_SCHEMA.names
    assert allocations.max_row == 7
    per_resource = {row[0]: row for row in book["per_resource"].iter_rows(min_row=2, values_only=True)}
    assert per_resource["A"][3] == 2  # requests on resource A
    unallocated = [row[0] for row in book["unallocated"].iter_rows(min_row=2, values_only=True)]
    assert unallocated == ["r3", "s2"]
    summary = {row[0]: row[1] for row in book["summary"].iter_rows(min_row=2, values_only=True)}
    assert summary["month"] == MONTH and summary["version"] == 1
    assert summary["Requests"] == 6 and summary["Requested units"] == sum(range(10, 14)) + sum(range(10, 12))


def test_an_xlsx_export_opens_on_a_summary_with_formats_charts_and_print_setup(store, tmp_path):
    utilization = [{"service": "compute", "region": "eu", "resources": 2, "capacity": 40, "planned_units": 31,
                    "utilization": 0.775},
                   {"service": "storage", "region": "us", "resources": 1, "capacity": 20, "planned_units": 14,
                    "utilization": 0.7}]
    store.write_version(MONTH, 1, mixed_rows(), caller_manifest(
        solver={"status": "FEASIBLE", "objective": 1538240.0, "bound": 1538271.0},
        metrics={"utilization": 0.75, "requested_units": 120, "utilization_by_service_region": utilization}))

    book = openpyxl.load_workbook(store.export(MONTH, fmt="xlsx", out=tmp_path / "m.xlsx")["path"])

    assert book.sheetnames == XLSX_SHEETS and book.active.title == "summary"
    summary = book["summary"]
    cells = {row[0].value: row[1] for row in summary.iter_rows(min_row=2, max_col=2) if row[0].value}
    assert cells["Allocated (incl. pinned)"].value == 4 and cells["Pinned"].value == 1
    assert (cells["Success rate"].value, cells["Success rate"].number_format) == (4 / 6, "0.0%")
    assert cells["Utilization"].number_format == "0.0%" and cells["Objective"].number_format == "#,##0"
    assert cells["Gap"].number_format == "0.000%" and cells["Gap"].value == pytest.approx(31 / 1538271)
    assert cells["capacity exhausted"].value == 1 and cells["excluded"].value == 1  # the reasons table
    # allocated units of the rows (r1 10, r2 11, r4 13) against the manifest's capacity of compute/eu
    assert cells["compute"].value == pytest.approx(34 / 40) and cells["compute"].number_format == "0.0%"
    first_detail = [row[0].value for row in summary.iter_rows(min_row=2, max_col=1)].index("month")
    assert first_detail > list(cells).index("Gap")  # figures first, what the workbook is after them
    assert sorted(chart.title.tx.rich.p[0].r[0].t for chart in summary._charts) == [
        "Requests not allocated, by reason", "Utilization by service"]
    utilization_sheet = book["utilization"]
    header = [c.value for c in utilization_sheet[2]]
    assert utilization_sheet.cell(3, header.index("success_rate") + 1).number_format == "0.0%"
    assert utilization_sheet.cell(3, header.index("allocated_units") + 1).number_format == "#,##0"


def test_the_default_export_is_the_latest_version(month, tmp_path):
    month.write_version(MONTH, 2, allocation_rows([("r1", "Z")]), caller_manifest())
    assert month.export(MONTH, fmt="csv", out=tmp_path / "a.csv")["version"] == 2
    assert month.export(MONTH, fmt="csv", out=tmp_path / "b.csv", version=1)["rows"] == 6


def test_a_final_export_reads_the_official_copy(month, tmp_path):
    month.write_version(MONTH, 2, allocation_rows([("r1", "Z")]), caller_manifest())
    month.write_final(MONTH, 1, {"finalized_by": "alice", "approved_by": "bob"})
    result = month.export(MONTH, fmt="xlsx", out=tmp_path / "final.xlsx", final=True)
    assert (result["version"], result["rows"], result["final"]) == (1, 6, True)
    summary = {r[0]: r[1] for r in openpyxl.load_workbook(result["path"])["summary"].iter_rows(values_only=True)}
    assert summary["source"] == "final" and summary["approved by"] == "bob"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fmt": "json"}, "Unknown export format"),
        ({"fmt": "csv", "final": True}, "no final allocation"),
        ({"fmt": "csv", "final": True, "version": 1}, "not both"),
        ({"fmt": "csv", "version": 7}, "does not exist"),
        ({"fmt": "csv", "status": "won"}, "unknown status 'won'; known statuses: allocated, excluded, pinned, "
                                          "unallocated"),
        ({"fmt": "csv", "service": ""}, "non-empty"),
        ({"fmt": "csv", "resource": "A\nB"}, "control characters"),
        ({"fmt": "csv", "service": "x" * 500}, "longer than"),
    ],
)
def test_an_impossible_export_is_a_clear_error_and_writes_nothing(month, tmp_path, kwargs, message):
    with pytest.raises(ExportError, match=message):
        month.export(MONTH, out=tmp_path / "x.out", **kwargs)
    assert list(tmp_path.glob("*x.out*")) == []


def test_exporting_a_month_without_versions_is_a_clear_error(store, tmp_path):
    with pytest.raises(ExportError, match="no export versions"):
        store.export(MONTH, fmt="csv", out=tmp_path / "x.csv")


# ------------------------------------------------------------------ filters


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({"service": "compute"}, ["r1", "r2", "r3", "r4"]),
        ({"service": "storage"}, ["s1", "s2"]),
        ({"resource": "A"}, ["r1", "r2"]),
        ({"status": "unallocated"}, ["r3"]),
        ({"status": "pinned"}, ["r4"]),
        ({"status": "excluded"}, ["s2"]),
        ({"service": "compute", "status": "allocated"}, ["r1", "r2"]),
        ({"service": "compute", "resource": "B", "status": "pinned"}, ["r4"]),
        ({"service": "compute", "region": "eu"}, ["r1", "r2", "r3", "r4"]),
    ],
)
@pytest.mark.parametrize("fmt", ["parquet", "csv", "xlsx"])
def test_filters_select_exactly_the_matching_rows(month, tmp_path, fmt, filters, expected):
    result = month.export(MONTH, fmt=fmt, out=tmp_path / f"f.{fmt}", **filters)
    if fmt == "parquet":
        got = pq.read_table(result["path"])["request_id"].to_pylist()
    elif fmt == "csv":
        got = [row[2] for row in read_csv_cells(result["path"])[1:]]
    else:
        got = [r[2] for r in openpyxl.load_workbook(result["path"])["allocations"].iter_rows(min_row=2, values_only=True)]
    assert got == expected
    assert result["rows"] == len(expected)


@pytest.mark.parametrize(
    "filters, message",
    [
        ({"service": "Compute"}, "unknown service 'Compute'; known services: compute, storage."),
        ({"service": "comp"}, "unknown service 'comp'; known services: compute, storage."),
        ({"region": "asia"}, "unknown region 'asia'; known regions: eu, us."),
        ({"resource": "no-such-resource"}, "unknown resource 'no-such-resource'; known resources: A, B, C."),
        ({"service": "compute' OR '1'='1"}, "unknown service"),
        ({"resource": "A'); DROP TABLE x; --"}, "unknown resource"),
        ({"service": "Repair", "status": "lost"}, "unknown service 'Repair'; known services: compute, storage; "
                                                   "unknown status 'lost'; known statuses: allocated, excluded"),
    ],
)
def test_an_unknown_filter_value_is_refused_with_the_known_values_and_nothing_is_written(month, tmp_path, filters,
                                                                                         message):
    with pytest.raises(ExportError, match=re.escape(message)):
        month.export(MONTH, fmt="xlsx", out=tmp_path / "f.xlsx", **filters)
    assert list(tmp_path.glob("*f.xlsx*")) == []


def test_a_known_value_without_rows_says_so_beside_the_empty_export(month, tmp_path):
    result = month.export(MONTH, fmt="csv", out=tmp_path / "f.csv", service="storage", resource="A")

    assert result["rows"] == 0
    assert result["empty"] == ("No row matches rows with service storage and resource A (of 6 rows: service storage: "
                               "2 rows, resource A: 2 rows); the export holds no rows.")


# -------------------------------------------------------- spreadsheet safety


@pytest.mark.parametrize("prefix", FORMULA_PREFIXES)
def test_text_starting_with_a_formula_character_is_neutralized(prefix):
    assert sanitize_cell(f"{prefix}1+1") == f"'{prefix}1+1"


@pytest.mark.parametrize("value", [-5, 3.5, 0, None, True, "plain", "a=b", "", "'=already"])
def test_numbers_and_harmless_text_pass_through_unchanged(value):
    assert sanitize_cell(value) == value


def test_no_csv_cell_starts_with_a_formula_character_and_numbers_stay_numbers(month, tmp_path):
    path = month.export(MONTH, fmt="csv", out=tmp_path / "all.csv")["path"]
    cells = read_csv_cells(path)
    for row in cells:
        for cell in row:
            assert not cell.startswith(FORMULA_PREFIXES), cell
    customers = {row[2]: row[3] for row in cells[1:]}
    assert customers["r1"] == "'=HYPERLINK(\"http://x\",\"y\")"
    assert customers["r2"] == "'-2+3"
    assert customers["r3"] == "'@SUM(A1)"
    assert customers["s1"] == "'\t=1"
    assert all(row[8].isdigit() and row[9].isdigit() for row in cells[1:])


def test_no_xlsx_cell_is_a_formula_and_numbers_stay_numbers(month, tmp_path):
    path = month.export(MONTH, fmt="xlsx", out=tmp_path / "all.xlsx")["path"]
    book = openpyxl.load_workbook(path)
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate)
                if isinstance(cell.value, str):
                    assert not cell.value.startswith(FORMULA_PREFIXES), (sheet.title, cell.value)
    allocations = book["allocations"]
    header = [c.value for c in allocations[1]]
    for name in ("version", "priority", "units", "cost"):
        column = header.index(name) + 1
        assert all(isinstance(allocations.cell(r, column).value, int) for r in range(2, allocations.max_row + 1))
    summary = {r[0]: r[1] for r in book["summary"].iter_rows(min_row=2, values_only=True)}
    assert summary["note"] == "'+note that looks like a formula"


# --------------------------------------------------------------------- diff


def test_a_diff_reports_added_removed_and_moved_allocations(store):
    store.write_version(MONTH, 1, allocation_rows([("r1", "A"), ("r2", "B"), ("r3", None), ("r4", "C")]), caller_manifest())
    store.write_version(
        MONTH,
        2,
        allocation_rows([("r1", "A"), ("r2", None), ("r3", "B"), ("r4", "D"), ("r5", "A")]),
        caller_manifest(metrics={"objective": 1250.5, "utilization": {"compute/eu": 0.75}, "label": "x"}),
    )
    diff = store.diff(MONTH, 1, 2)
    assert diff["added"] == [{"request_id": "r3", "resource_id": "B"}, {"request_id": "r5", "resource_id": "A"}]
    assert diff["removed"] == [{"request_id": "r2", "resource_id": "B"}]
    assert diff["moved"] == [{"request_id": "r4", "from_resource": "C", "to_resource": "D"}]
    assert diff["counts"] == {"added": 2, "removed": 1, "moved": 1, "unchanged": 1}
    metrics = diff["metrics"]
    assert metrics["objective"] == {"from": 1000.0, "to": 1250.5, "change": 250.5}
    assert metrics["utilization.compute/eu"] == {"from": 0.5, "to": 0.75, "change": 0.25}
    assert metrics["requests"] == {"from": 4, "to": 5, "change": 1}
    assert metrics["allocated"] == {"from": 3, "to": 4, "change": 1}
    assert "label" not in metrics


def test_a_diff_is_written_as_json_when_asked(store):
    store.write_version(MONTH, 1, allocation_rows([("r1", "A")]), caller_manifest())
    store.write_version(MONTH, 2, allocation_rows([("r1", "B")]), caller_manifest())
    diff = store.diff(MONTH, 1, 2)
    written = json.loads(store.diff_path(MONTH, 1, 2).read_text())
    assert diff["path"] == str(store.diff_path(MONTH, 1, 2))
    assert written == {k: v for k, v in diff.items() if k != "path"}
    store.diff(MONTH, 2, 1, write=False)
    assert not store.diff_path(MONTH, 2, 1).exists()


def test_a_diff_of_a_version_with_itself_is_empty(store):
    store.write_version(MONTH, 1, allocation_rows([("r1", "A"), ("r2", None)]), caller_manifest())
    diff = store.diff(MONTH, 1, 1, write=False)
    assert diff["counts"] == {"added": 0, "removed": 0, "moved": 0, "unchanged": 1}
    assert all(m["change"] == 0 for m in diff["metrics"].values())


def test_a_diff_with_a_missing_version_is_a_clear_error(store):
    store.write_version(MONTH, 1, allocation_rows([("r1", "A")]), caller_manifest())
    with pytest.raises(ExportError, match="Version 3 of 2025-03 does not exist"):
        store.diff(MONTH, 1, 3)
