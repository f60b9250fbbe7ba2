"""The XLSX export: filtered throughout, and printable (summary, utilization and reasons one A4 page each)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import openpyxl
import pytest

from resources.workbook import ONE_PAGE_SHEETS, SHEETS
from tests.resources.builders import MONTH, caller_manifest, month_rows

# The pages of a PDF that LibreOffice writes: one page object each.
PAGE_OBJECT = re.compile(rb"/Type\s*/Page[^s]")


@pytest.fixture
def demo_sized(store):
    """A store holding a demo-sized version (2,000 rows, 5 services x 3 regions, 120 resources)."""
    rows, groups = month_rows()
    store.write_version(MONTH, 1, rows, caller_manifest(
        solver={"status": "FEASIBLE", "objective": 1474670.0, "bound": 1474809.0},
        metrics={"utilization_by_service_region": groups}))
    return store


def sheet_rows(sheet, header_row: int) -> list[dict]:
    """The rows of a table whose header is on `header_row` (1-based), as dicts."""
    rows = list(sheet.iter_rows(min_row=header_row, values_only=True))
    return [dict(zip(rows[0], row)) for row in rows[1:]]


def test_a_filtered_workbook_describes_only_the_filtered_rows_on_every_sheet(demo_sized, tmp_path):
    path = demo_sized.export(MONTH, fmt="xlsx", out=tmp_path / "f.xlsx", service="repair", status="unallocated")["path"]
    expected = demo_sized.read_version(MONTH, 1).query("service == 'repair' and status == 'unallocated'")

    book = openpyxl.load_workbook(path)

    summary = book["summary"]
    assert summary["A2"].value == (f"Filtered: only rows with service repair and status unallocated: {len(expected)} "
                                   f"of 2,000 rows.")
    assert summary["A3"].value == ("Every sheet describes these rows only; the solver's objective, bound and gap "
                                   "(whole version) are left out.")
    figures = {row[0]: row[1] for row in summary.iter_rows(min_row=3, max_col=2, values_only=True) if row[0]}
    assert figures["Requests"] == len(expected) and figures["Unallocated"] == len(expected)
    assert figures["Allocated (incl. pinned)"] == 0 and figures["Utilization"] == 0
    assert figures["Requested units"] == expected["requested_units"].sum()
    assert figures["Capacity units"] == 3 * 700  # repair's three regions only
    assert not {"Objective", "Bound", "Gap"} & set(figures)
    assert figures["filters"] == "only rows with service repair and status unallocated"
    utilization = sheet_rows(book["utilization"], 2)
    assert {row["service"] for row in utilization} == {"repair"}
    assert sum(row["requests"] for row in utilization) == len(expected)
    reasons = sheet_rows(book["reasons"], 2)
    assert {row["reason"]: row["requests"] for row in reasons} == {
        k.replace("_", " "): v for k, v in expected["reason"].value_counts().items()}
    assert sheet_rows(book["per_resource"], 1) == []
    assert {row["service"] for row in sheet_rows(book["unallocated"], 1)} == {"repair"}
    assert [row["request_id"] for row in sheet_rows(book["allocations"], 1)] == expected["request_id"].tolist()


def test_an_unfiltered_workbook_says_it_holds_every_row_and_keeps_the_solver_figures(demo_sized, tmp_path):
    book = openpyxl.load_workbook(demo_sized.export(MONTH, fmt="xlsx", out=tmp_path / "a.xlsx")["path"])

    summary = book["summary"]
    assert summary["A1"].value == f"{MONTH}, version 1 (proposed)"
    assert summary["A2"].value == "All 2,000 rows of the version; every sheet describes them."
    figures = {row[0]: row[1] for row in summary.iter_rows(min_row=3, max_col=2, values_only=True) if row[0]}
    assert figures["Objective"] == 1474670 and figures["Capacity units"] == 15 * 700


def test_the_summary_utilization_and_reasons_sheets_are_set_up_to_print_on_one_a4_page_each(demo_sized, tmp_path):
    book = openpyxl.load_workbook(demo_sized.export(MONTH, fmt="xlsx", out=tmp_path / "a.xlsx")["path"])

    assert book.sheetnames == list(SHEETS) and SHEETS[-1] == "allocations"  # raw rows last
    for sheet in book.worksheets:
        setup = sheet.page_setup
        assert (setup.orientation, str(setup.paperSize)) == ("landscape", "9"), sheet.title
        # fitToWidth and fitToHeight default to 1 (absent from the file); 0 is "as many pages as needed".
        assert sheet.sheet_properties.pageSetUpPr.fitToPage and setup.fitToWidth in (None, 1, "1"), sheet.title
        assert setup.fitToHeight in ((None, 1, "1") if sheet.title in ONE_PAGE_SHEETS else (0, "0")), sheet.title
        header = int(sheet.freeze_panes[1:]) - 1
        assert sheet.print_title_rows == f"$1:${header}", sheet.title
        assert sheet.cell(header, 1).font.b and sheet.cell(header, 1).fill.fgColor.rgb.endswith("1F4E78"), sheet.title
        assert sheet.oddFooter.right.text == "Page &P of &N", sheet.title
    for name in ONE_PAGE_SHEETS:
        assert book[name].print_area, name
    utilization = book["utilization"]
    header = [c.value for c in utilization[2]]
    assert utilization.cell(3, header.index("utilization") + 1).number_format == "0.0%"
    assert utilization.cell(3, header.index("requested_units") + 1).number_format == "#,##0"
    reasons = book["reasons"]
    header = [c.value for c in reasons[2]]
    examples = [row[header.index("example")] for row in reasons.iter_rows(min_row=3)]
    longest = max(examples, key=lambda cell: len(cell.value or ""))
    assert longest.alignment.wrap_text and reasons.column_dimensions[longest.column_letter].width >= 60
    assert reasons.row_dimensions[longest.row].height >= 30  # the long example wraps onto more lines


def only_sheets(source: Path, target: Path, keep: tuple[str, ...]) -> None:
    """A copy of the workbook holding only the first sheets `keep` (charts and print settings kept)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "xl/workbook.xml":
                text = data.decode()
                text = re.sub(r'<sheet name="([^"]+)"[^>]*/>',
                              lambda m: m.group(0) if m.group(1) in keep else "", text)
                text = re.sub(r'<definedName [^>]*localSheetId="(\d+)"[^>]*>[^<]*</definedName>',
                              lambda m: m.group(0) if int(m.group(1)) < len(keep) else "", text)
                data = text.encode()
            zout.writestr(item, data)


def pdf_pages(workbook: Path, folder: Path) -> int:
    """Pages of the workbook printed to PDF by LibreOffice."""
    profile = (folder / "lo-profile").as_uri()  # its own profile: another soffice may be running
    subprocess.run(["soffice", f"-env:UserInstallation={profile}", "--headless", "--convert-to", "pdf",
                    "--outdir", str(folder), str(workbook)], check=True, capture_output=True, timeout=240)
    return len(PAGE_OBJECT.findall((folder / f"{workbook.stem}.pdf").read_bytes()))


@pytest.mark.skipif(shutil.which("soffice") is None and os.environ.get("CI") != "true",
                    reason="LibreOffice (soffice) is not installed; .ci/run installs libreoffice-calc")
@pytest.mark.timeout(600)
def test_libreoffice_prints_the_summary_utilization_and_reasons_sheets_on_one_page_each(demo_sized, tmp_path):
    workbook = Path(demo_sized.export(MONTH, fmt="xlsx", out=tmp_path / "month.xlsx")["path"])
    assert SHEETS[:3] == ONE_PAGE_SHEETS
    only_sheets(workbook, tmp_path / "printed.xlsx", ONE_PAGE_SHEETS)

    # Every sheet prints at least one page, so three pages for the three sheets is one page each.
    assert pdf_pages(tmp_path / "printed.xlsx", tmp_path) == 3
