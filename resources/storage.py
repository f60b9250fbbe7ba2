"""The export store: versions (resources.version_store) plus a month written to one file on request, and diffs.

Layout and paths: resources/export_paths.py; the row contract: resources/allocation_rows.py; manifests and
checksums: resources/manifests.py (docs/exports.md describes them all). This module imports nothing from Dagster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from resources.allocation_rows import ALLOCATION_SCHEMA, STATUSES, current_schema
from resources.cells import sanitize_series
from resources.export_filters import FILTER_COLUMNS, Filters, known_beyond_rows, landed_values
from resources.export_paths import DATA_FILE, ExportError, check_month, check_target
from resources.manifests import read_manifest, verify_dir, write_json_atomic
from resources.safe_write import UnsafeTarget, write_export
from resources.version_diff import compare_versions
from resources.version_store import VersionStore
from resources.workbook import WorkbookSource, write_workbook

# The names callers have always imported from here (assets, the CLI, the view, docs/exports.md).
__all__ = ["ALLOCATION_SCHEMA", "ExportError", "ExportStore", "check_target"]

FORMATS = ("parquet", "csv", "xlsx")
MAX_FILTER_LENGTH = 200
XLSX_MAX_ROWS = 1_048_576


class ExportStore(VersionStore):
    """Versioned allocation exports under ``home/exports``, written to files on request and compared, and the
    figures derived from them kept under ``home/cache`` (resources/derived_files.py); no Dagster."""

    def export(
        self,
        month: str,
        *,
        fmt: str,
        out: Path,
        version: int | None = None,
        final: bool = False,
        service: str | None = None,
        resource: str | None = None,
        status: str | None = None,
        force: bool = False,
        region: str | None = None,
        standing: dict | None = None,
    ) -> dict:
        """Write a month's allocation (latest, a given or the final version), optionally filtered, to one file."""
        month = check_month(month)
        out = check_target(self.home, out, force, self.protected)
        if fmt not in FORMATS:
            raise ExportError(f"Unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}.")
        if final and version is not None:
            raise ExportError("Choose either a version or the final allocation, not both.")
        filters = Filters.of(service=_check_filter("service", service), region=_check_filter("region", region),
                             resource=_check_filter("resource", resource), status=_check_filter("status", status))
        if final:
            manifest = self.final_manifest(month)
            if manifest is None:
                raise ExportError(f"Month {month} has no final allocation.")
            source = self.final_path(month) / DATA_FILE
            version = int(manifest["version"])
        else:
            if version is None:
                version = self.latest_version(month)
                if version is None:
                    raise ExportError(f"Month {month} has no export versions yet.")
            path = self.complete_version_path(month, version)
            manifest = read_manifest(path)
            source = path / DATA_FILE
        if not verify_dir(source.parent, manifest):
            what = f"The official copy of {month}" if final else f"Version {version} of {month}"
            raise ExportError(f"{what} at {source.parent} fails its checksums (the sha256 of its manifest): it is "
                              f"damaged and is not exported; `batch-admin audit --verify` and `batch-admin repair "
                              f"{month}` look into it.")
        every = _query_rows(source, Filters())
        unknown = filters.unknown(every, known_beyond_rows(manifest, STATUSES),
                                  lambda name: landed_values(self.home, month, name))
        if unknown:
            raise ExportError(f"Cannot export {month} version {version}: {unknown}")
        table = _query_rows(source, filters) if filters else every
        empty = filters.empty(every) if filters and table.num_rows == 0 else None
        if fmt == "xlsx" and table.num_rows + 1 > XLSX_MAX_ROWS:
            raise ExportError(f"{table.num_rows} rows exceed the XLSX sheet limit; export as CSV or Parquet instead.")

        def write(handle: Any) -> None:
            if fmt == "parquet":
                pq.write_table(table, handle, compression="zstd")
            elif fmt == "csv":
                _write_csv(table, handle)
            else:
                write_workbook(table.to_pandas(), handle, WorkbookSource(manifest, final, filters, every.num_rows,
                                                                         standing or manifest.get("standing")))

        try:
            write_export(self.home, self.protected, out, write, force)
        except UnsafeTarget as exc:
            raise ExportError(str(exc)) from None
        return {
            "path": str(out),
            "rows": table.num_rows,
            "format": fmt,
            "month": month,
            "version": version,
            "final": final,
            "filters": filters.values,
            **({"empty": empty} if empty else {}),
        }

    def diff(self, month: str, from_version: int, to_version: int, write: bool = True) -> dict:
        """Compare two versions: allocations added, removed and moved, and the change of every metric."""
        result = compare_versions(self, month, from_version, to_version)
        if write:
            path = self.diff_path(result["month"], int(from_version), int(to_version))
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, result)
            result["path"] = str(path)
        return result


def _check_filter(name: str, value: str | None) -> str | None:
    """A filter value, when it is short, non-empty text without control characters."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ExportError(f"The {name} filter must be a non-empty text value.")
    if len(value) > MAX_FILTER_LENGTH or any(ord(c) < 32 for c in value):
        raise ExportError(f"The {name} filter is longer than {MAX_FILTER_LENGTH} characters or holds control characters.")
    return value


_FILTER_SQL = """
SELECT * FROM read_parquet($path, hive_partitioning = false)
WHERE ($service::VARCHAR IS NULL OR service = $service)
  AND ($region::VARCHAR IS NULL OR region = $region)
  AND ($resource::VARCHAR IS NULL OR resource_id = $resource)
  AND ($status::VARCHAR IS NULL OR status = $status)
ORDER BY request_id
"""


def _query_rows(path: Path, filters: Filters) -> pa.Table:
    """Rows of one data file matching the filters; values are bound as parameters, never pasted into SQL."""
    params = {"path": str(path), **{name: filters.values.get(name) for name in FILTER_COLUMNS}}
    with duckdb.connect() as con:
        table = con.sql(_FILTER_SQL, params=params).to_arrow_table()
    return current_schema(table)


def _write_csv(table: pa.Table, path: Path | BinaryIO) -> None:
    """The rows as UTF-8 CSV, text neutralized, numbers as numbers."""
    frame = table.to_pandas()
    for column in frame.columns:
        if pa.types.is_string(table.schema.field(column).type):
            frame[column] = sanitize_series(frame[column])
    frame.to_csv(path, index=False, encoding="utf-8", lineterminator="\n")
