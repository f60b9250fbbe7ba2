"""The XLSX export: a workbook a manager can read on screen and print (summary, utilization and reasons one
A4 page each, raw rows last)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import xlsxwriter

from batch import formats as figure_formats
from resources import workbook_sheets as sheets
from resources.advice_files import advice_sheet
from resources.cells import sanitize_cell, sanitize_series
from resources.export_filters import Filters

# The sheets that print on one page each, and the order of every sheet: raw rows last.
ONE_PAGE_SHEETS = ("summary", "utilization", "reasons")
SHEETS = (*ONE_PAGE_SHEETS, "per_resource", "unallocated", "allocations")
A4 = 9
# Characters of a wrapped text cell per line at its column width, and the height of one line (points).
LINE_HEIGHT = 15
EXAMPLE_WIDTH = 70


@dataclass(frozen=True)
class WorkbookSource:
    """What the workbook is of: the version's manifest, its standing, the filters and the version's row count."""

    manifest: dict
    final: bool
    filters: Filters
    version_rows: int
    standing: dict | None = None


def write_workbook(frame: pd.DataFrame, path: Path | BinaryIO, source: WorkbookSource) -> None:
    """Write the workbook: the summary (figures, charts, what this is) first and active, then the sheets."""
    options = {
        "constant_memory": True,  # rows are streamed to disk in order; memory stays flat at 100k rows
        "strings_to_formulas": False,
        "strings_to_numbers": False,
        "strings_to_urls": False,
    }
    workbook = xlsxwriter.Workbook(str(path) if isinstance(path, Path) else path, options)
    formats = _Formats(workbook)
    try:
        usage = sheets.utilization(frame, source.manifest, source.filters)
        why = sheets.reasons(frame)
        _write_summary(workbook, formats, frame, source, usage, why)
        _write_table(workbook, formats, "utilization", usage, one_page=True,
                     title=f"Utilization by service and region: {_scope(source, len(frame))}")
        _write_table(workbook, formats, "reasons", why, one_page=True,
                     title=f"Requests not allocated, by reason: {_scope(source, len(frame))}",
                     wrap={"example": EXAMPLE_WIDTH})
        _write_table(workbook, formats, "per_resource", sheets.per_resource(frame))
        _write_table(workbook, formats, "unallocated", sheets.unallocated(frame))
        # The advice describes the whole version: a filtered workbook describes its rows only (issue 28).
        for name, advice in ({} if source.filters else advice_sheet(source.manifest)).items():
            _write_table(workbook, formats, name, advice)
        _write_table(workbook, formats, "allocations", frame)
    finally:
        workbook.close()


def _scope(source: WorkbookSource, rows: int) -> str:
    return sheets.scope_sentence(source.filters, rows, source.version_rows).split("\n")[0].rstrip(".")


class _Formats:
    """The workbook's cell formats, made once per workbook."""

    def __init__(self, workbook):
        self.header = workbook.add_format({"bold": True, "bg_color": "#1F4E78", "font_color": "#FFFFFF",
                                           "border": 1, "text_wrap": True, "valign": "top"})
        self.title = workbook.add_format({"bold": True, "font_size": 14})
        self.note = workbook.add_format({"italic": True, "text_wrap": False})
        self.warning = workbook.add_format({"bold": True, "font_color": "#9C0006"})
        self.bold = workbook.add_format({"bold": True})
        self.wrap = workbook.add_format({"text_wrap": True, "valign": "top"})
        # Top-aligned, so that numbers stand level with a wrapped text beside them.
        self.count = workbook.add_format({"num_format": figure_formats.XLSX_COUNT, "valign": "top"})
        self.percent = workbook.add_format({"num_format": figure_formats.XLSX_PERCENT, "valign": "top"})
        self.gap = workbook.add_format({"num_format": figure_formats.XLSX_GAP, "valign": "top"})
        self.decimal = workbook.add_format({"num_format": figure_formats.XLSX_DECIMAL, "valign": "top"})
        self.integer = workbook.add_format({"num_format": "0", "valign": "top"})
        self.text = workbook.add_format({"valign": "top"})

    def for_column(self, name: str, series: pd.Series | None = None):
        """The number format of a column, by its name (ids and priorities stay plain)."""
        if name == "gap":
            return self.gap
        if name in figure_formats.PERCENT_FIELDS or name.endswith(("_rate", "_ratio", "utilization", "share_of_rows")):
            return self.percent
        if name in ("priority", "version"):
            return self.integer
        if series is not None and pd.api.types.is_float_dtype(series) and not (series.dropna() % 1 == 0).all():
            return self.decimal
        return self.count


def _print_setup(sheet, header_row: int, last_row: int, last_col: int, one_page: bool) -> None:
    """Landscape A4, one page wide (one page in all for a one-page sheet), header rows repeated, page numbers."""
    sheet.set_landscape()
    sheet.set_paper(A4)
    sheet.set_margins(left=0.4, right=0.4, top=0.6, bottom=0.6)
    sheet.repeat_rows(0, header_row)
    sheet.freeze_panes(header_row + 1, 0)
    sheet.set_footer("&L&A&RPage &P of &N")
    sheet.print_area(0, 0, max(last_row, header_row), last_col)
    sheet.fit_to_pages(1, 1 if one_page else 0)


def _write_summary(workbook, formats: _Formats, frame: pd.DataFrame, source: WorkbookSource,
                   usage: pd.DataFrame, why: pd.DataFrame) -> None:
    """The first, active sheet: what the rows are, the key figures, reasons and utilization with charts, then
    what the workbook is."""
    sheet = workbook.add_worksheet("summary")
    sheet.activate()
    sheet.set_column(0, 0, 30)
    sheet.set_column(1, 1, 42)
    sheet.set_column(2, 2, 14)
    manifest = source.manifest
    standing = source.standing or {}
    state = standing.get("state") or ("final" if source.final else manifest.get("status") or "proposed")
    sheet.write_string(0, 0, sanitize_cell(f"{manifest.get('month')}, version {manifest.get('version')} ({state})"),
                       formats.title)
    row = 0
    # One sentence a line: the print area is as wide as the tables and the charts, no wider.
    for line in sheets.scope_sentence(source.filters, len(frame), source.version_rows).split("\n"):
        row += 1
        sheet.write_string(row, 0, sanitize_cell(line), formats.warning if source.filters else formats.note)
    if source.filters and frame.empty:
        row += 1
        sheet.write_string(row, 0, "No row matches the filter: every figure below is zero.", formats.warning)
    for line in _lines(str(standing.get("sentence") or "")):
        row += 1
        sheet.write_string(row, 0, sanitize_cell(line), formats.warning)
    row += 1
    header = row
    sheet.write_row(row, 0, ["figure", "value"], formats.header)
    for name, label, value in sheets.key_figures(frame, manifest, source.filters):
        row += 1
        sheet.write_string(row, 0, label, formats.bold)
        fmt = formats.for_column(name) if name in figure_formats.PERCENT_FIELDS or name == "gap" else formats.count
        sheet.write_number(row, 1, float(value), fmt)
    if len(why):
        row += 2
        first = row + 1
        sheet.write_row(row, 0, ["not allocated, by reason", "requests"], formats.header)
        for record in why.itertuples(index=False):
            row += 1
            sheet.write_string(row, 0, sanitize_cell(str(record.reason)))
            sheet.write_number(row, 1, record.requests, formats.count)
        _chart(workbook, sheet, "bar", "Requests not allocated, by reason", (first, row), header + 1, "#C0504D",
               {"value": True}, reverse=True)
    by_service = _by_service(usage)
    if len(by_service):
        row += 2
        first = row + 1
        sheet.write_row(row, 0, ["service", "utilization", "capacity"], formats.header)
        for record in by_service.itertuples(index=False):
            row += 1
            sheet.write_string(row, 0, sanitize_cell(str(record.service)))
            _write_number(sheet, row, 1, record.utilization, formats.percent)
            _write_number(sheet, row, 2, record.capacity, formats.count)
        _chart(workbook, sheet, "column", "Utilization by service", (first, row), header + 17, "#1F4E78",
               {"value": True, "num_format": "0%"})
    row += 2
    sheet.write_row(row, 0, ["about this workbook", ""], formats.header)
    for name, value in _summary_details(manifest, source):
        row += 1
        sheet.write_string(row, 0, name)
        _write_any(sheet, row, 1, "" if value is None else value)
    # The charts sit to the right of the tables, in columns D..L and 32 rows down at most.
    _print_setup(sheet, header, max(row, header + 32), 11, one_page=True)
    sheet.autofilter(header, 0, header, 1)


def _lines(text: str, width: int = 150) -> list[str]:
    """A long sentence cut at spaces into lines that fit the summary's printed width."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _chart(workbook, sheet, kind: str, title: str, rows: tuple[int, int], at_row: int, color: str,
           labels: dict, reverse: bool = False) -> None:
    """A native chart of the summary's two-column table at `rows`, placed right of the tables."""
    chart = workbook.add_chart({"type": kind})
    chart.add_series({"name": title, "categories": ["summary", rows[0], 0, rows[1], 0],
                      "values": ["summary", rows[0], 1, rows[1], 1], "fill": {"color": color},
                      "data_labels": labels})
    chart.set_title({"name": title})
    chart.set_legend({"none": True})
    if reverse:
        chart.set_y_axis({"reverse": True})
    else:
        chart.set_y_axis({"num_format": "0%", "min": 0})
    sheet.insert_chart(at_row, 3, chart, {"x_scale": 1.2, "y_scale": 1.0})


def _by_service(usage: pd.DataFrame) -> pd.DataFrame:
    """Utilization per service (the utilization sheet has the regions)."""
    known = usage.dropna(subset=["capacity"])
    if known.empty:
        return pd.DataFrame(columns=["service", "utilization", "capacity"])
    table = known.groupby("service", as_index=False)[["capacity", "allocated_units"]].sum()
    table["utilization"] = table["allocated_units"] / table["capacity"].where(table["capacity"] != 0)
    return table[["service", "utilization", "capacity"]]


def _summary_details(manifest: dict, source: WorkbookSource) -> list[tuple[str, Any]]:
    """(field, value) lines that say what the workbook is."""
    standing = source.standing or {}
    rows: list[tuple[str, Any]] = [
        ("month", manifest.get("month")),
        ("version", manifest.get("version")),
        ("source", "final" if source.final else "version"),
        ("manifest status", manifest.get("status")),
        ("filters", source.filters.in_words()),
        ("rows", f"{source.version_rows:,} in the version"),
        ("run id", standing.get("computed_by_run") or manifest.get("run_id")),
        ("actor", manifest.get("actor")),
        ("note", manifest.get("note")),
        ("created at", manifest.get("created_at")),
        ("exported at", dt.datetime.now(dt.UTC).isoformat(timespec="seconds")),
    ]
    if "final_now" in standing:
        rows.append(("final version now", standing["final_now"] if standing["final_now"] is not None else "none"))
    if source.final:
        rows += [(k.replace("_", " "), manifest.get(k))
                 for k in ("finalized_by", "approved_by", "finalized_at", "finalize_run_id")]
    solver = manifest.get("solver")
    if isinstance(solver, dict):
        rows += [(f"solver {k}", v) for k, v in solver.items() if isinstance(v, str)]
    return rows


def _write_table(workbook, formats: _Formats, name: str, data: pd.DataFrame, *, one_page: bool = False,
                 title: str | None = None, wrap: dict[str, int] | None = None) -> None:
    """One data sheet: a title line (when given), a styled, frozen, filtered header; numbers formatted, text
    neutralized; printable one page wide (one page in all when one_page)."""
    sheet = workbook.add_worksheet(name)
    columns = list(data.columns)
    wrap = wrap or {}
    header = 0
    if title:
        sheet.write_string(0, 0, sanitize_cell(title), formats.bold)
        header = 1
    _print_setup(sheet, header, header + len(data), len(columns) - 1, one_page)
    sheet.autofilter(header, 0, header + max(len(data), 1), len(columns) - 1)
    writers, values, cell_formats = [], [], []
    for col, column in enumerate(columns):
        series = data[column]
        numeric = pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series)
        cell_formats.append(formats.for_column(column, series) if numeric else
                            formats.wrap if column in wrap else formats.text if wrap else None)
        width = wrap.get(column) or _column_width(column, series)
        sheet.set_column(col, col, width, cell_formats[-1])
        if numeric:
            writers.append(_write_number)
            values.append(series.astype(float).tolist() if pd.api.types.is_bool_dtype(series) else series.tolist())
        else:
            writers.append(_write_text)
            values.append(sanitize_series(series).tolist())
    sheet.write_row(header, 0, columns, formats.header)
    wrapped = [columns.index(c) for c in wrap if c in columns]
    for row, record in enumerate(zip(*values), start=header + 1):
        if wrapped:
            # Row heights of wrapped text are set here: not every spreadsheet grows a row to fit when it opens.
            lines = max(math.ceil(len(str(record[c] or "")) / wrap[columns[c]]) for c in wrapped)
            sheet.set_row(row, LINE_HEIGHT * max(lines, 1))
        for col, value in enumerate(record):
            writers[col](sheet, row, col, value, cell_formats[col])


def _write_number(sheet, row: int, col: int, value: Any, fmt=None) -> None:
    if value is not None and not (isinstance(value, float) and math.isnan(value)) and value is not pd.NA:
        sheet.write_number(row, col, value, fmt)


def _write_text(sheet, row: int, col: int, value: Any, fmt=None) -> None:
    if value is not None and not (isinstance(value, float) and math.isnan(value)) and value is not pd.NA:
        sheet.write_string(row, col, value, fmt)


def _write_any(sheet, row: int, col: int, value: Any) -> None:
    if isinstance(value, bool):
        sheet.write_boolean(row, col, value)
    elif isinstance(value, (int, float, np.integer, np.floating)):
        _write_number(sheet, row, col, float(value))
    elif value is not None:
        sheet.write_string(row, col, sanitize_cell(str(value)))


def _column_width(name: str, series: pd.Series) -> float:
    """Width from the header and the longest value among the first rows, within reason."""
    sample = series.head(5000).dropna()
    if sample.empty:
        longest = 0
    elif pd.api.types.is_numeric_dtype(sample):
        longest = len(f"{sample.max():,}")
    else:
        longest = int(sample.astype("string").str.len().max())
    return float(min(max(len(name) + 4, longest + 2, 8), 60))
