"""Versioned Parquet exports of monthly allocations, their final copies, file exports and diffs.

Layout under ``<home>/exports`` (SPEC §6, details in docs/exports.md):

    allocations/month=YYYY-MM/version=N/allocations.parquet + manifest.json   immutable versions
    final/month=YYYY-MM -> ../.final_store/month=YYYY-MM/vN-<token>/          official copy (symlink)
    diffs/month=YYYY-MM/vN_to_vM.json                                         comparisons
    .staging/month=YYYY-MM/version=N/                                         writes in progress

A version is written completely in ``.staging`` (data files first, manifest last, each
fsynced) and then renamed into ``allocations/`` in one atomic directory rename, so a
reader globbing ``allocations/*/*/*.parquet`` never sees a half version. A staging
directory left by a crash keeps its version number reserved, so numbers are never reused.
This module imports nothing from Dagster.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from batch import metrics as figures
from batch import months
from batch.faults import crash_point
from resources.cells import sanitize_series
from resources.export_filters import FILTER_COLUMNS, Filters, known_beyond_rows, landed_values
from resources.safe_write import UnsafeTarget, write_export
from resources.workbook import WorkbookSource, write_workbook
from solvers.schema import STATUS_ALLOCATED, STATUS_EXCLUDED, STATUS_PINNED, STATUS_UNALLOCATED

# 2: requested_units beside units (issue 28); files of schema 1 read with requested_units null.
SCHEMA_VERSION = 2

ALLOCATION_SCHEMA = pa.schema(
    [
        pa.field("month", pa.string(), nullable=False),
        pa.field("version", pa.int32(), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("service", pa.string(), nullable=False),
        pa.field("region", pa.string(), nullable=False),
        pa.field("priority", pa.int16(), nullable=False),
        pa.field("resource_id", pa.string(), nullable=True),
        pa.field("units", pa.int64(), nullable=False),
        # What the request asked for, so an unallocated row (units 0) still shows it; null only in schema-1 files.
        pa.field("requested_units", pa.int64(), nullable=True),
        pa.field("cost", pa.int64(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=True),
        # Why, specifically: which constraint and which resources were full (issue 6 §5).
        pa.field("reason_detail", pa.string(), nullable=True),
    ],
    metadata={"batch_admin.schema_version": str(SCHEMA_VERSION)},
)
ALLOCATION_COLUMNS = ALLOCATION_SCHEMA.names

# Nullable in the schema (older files lack them) but required of every row written now.
WRITE_REQUIRED = frozenset({"requested_units"})

STATUSES = (STATUS_ALLOCATED, STATUS_UNALLOCATED, STATUS_PINNED, STATUS_EXCLUDED)
STATUSES_WITH_RESOURCE = (STATUS_ALLOCATED, STATUS_PINNED)
FORMATS = ("parquet", "csv", "xlsx")

DATA_FILE = "allocations.parquet"
MANIFEST_FILE = "manifest.json"
# The version's HTML report: a view rebuilt from the data, beside the manifest and outside its checksums.
REPORT_FILE = "report.html"
SIDECAR_FILES = frozenset({MANIFEST_FILE, REPORT_FILE})
# Fields the store owns in every manifest; a caller may not set them.
STORE_FIELDS = ("schema_version", "month", "version", "row_count", "files", "created_at", "standing")
VERSION_STATUS = "proposed"
FINAL_STATUS = "final"

# Test hook: seconds to sleep after the data files are written and before the manifest,
# so that a test can SIGKILL a writer mid-version.
TEST_PAUSE_ENV = "BATCH_ADMIN_EXPORT_TEST_PAUSE_S"

MAX_FILTER_LENGTH = 200
XLSX_MAX_ROWS = 1_048_576
_VERSION_DIR = re.compile(r"^version=(\d+)$")


class ExportError(Exception):
    """A request to the export store that cannot be honoured, told in one sentence."""


@dataclass
class VersionInfo:
    """A complete version (or final copy) of a month's allocation and its manifest."""

    month: str
    version: int
    path: Path
    manifest: dict


class ExportStore:
    """Versioned allocation exports under ``home/exports``; pure Python, no Dagster."""

    def __init__(self, home: Path, protected: tuple[Path, ...] = ()):
        """protected: files and folders outside the home that no export may write (keys, roles file...)."""
        self.home = Path(home)
        self.protected = protected
        self.root = self.home / "exports"
        self.allocations_dir = self.root / "allocations"
        self.final_dir = self.root / "final"
        self.final_store_dir = self.root / ".final_store"
        self.diffs_dir = self.root / "diffs"
        self.staging_dir = self.root / ".staging"

    # ---------------------------------------------------------------- paths

    def version_path(self, month: str, version: int) -> Path:
        """Directory of one version (it exists only once the version is complete)."""
        return self.allocations_dir / f"month={_check_month(month)}" / f"version={_check_version(version)}"

    def final_path(self, month: str) -> Path:
        """Path of a month's official copy (a symlink to the current final directory)."""
        return self.final_dir / f"month={_check_month(month)}"

    def diff_path(self, month: str, from_version: int, to_version: int) -> Path:
        """File a comparison of two versions is written to."""
        return self.diffs_dir / f"month={_check_month(month)}" / f"v{from_version}_to_v{to_version}.json"

    # ------------------------------------------------------------- versions

    def months(self) -> list[str]:
        """Months that have at least one complete version."""
        if not self.allocations_dir.is_dir():
            return []
        found = []
        for entry in self.allocations_dir.iterdir():
            name = entry.name.removeprefix("month=")
            if entry.name.startswith("month=") and months.MONTH_RE.fullmatch(name) and self.versions(name):
                found.append(name)
        return sorted(found)

    def versions(self, month: str) -> list[int]:
        """Complete versions of a month (those with a manifest), ascending."""
        return sorted(v for v, d in self._version_dirs(self.allocations_dir, month) if (d / MANIFEST_FILE).is_file())

    def latest_version(self, month: str) -> int | None:
        """Highest complete version of a month, or None."""
        versions = self.versions(month)
        return versions[-1] if versions else None

    def next_version(self, month: str) -> int:
        """1 + the highest version that is complete or reserved by a (possibly crashed) write."""
        used = [v for v, _ in self._version_dirs(self.allocations_dir, month)]
        used += [v for v, _ in self._version_dirs(self.staging_dir, month)]
        return max(used, default=0) + 1

    def write_version(self, month: str, version: int, rows: pd.DataFrame, manifest: dict) -> VersionInfo:
        """Write an immutable version atomically: data, then manifest, then one directory rename."""
        month, version = _check_month(month), _check_version(version)
        fields = _caller_fields(manifest)
        table = _allocation_table(rows, month, version)
        target = self.version_path(month, version)
        if target.exists():
            raise ExportError(f"Version {version} of {month} already exists and versions are immutable.")
        staging = self.staging_dir / f"month={month}" / f"version={version}"
        staging.parent.mkdir(parents=True, exist_ok=True)
        try:
            staging.mkdir()  # exclusive: reserves the number against a concurrent writer
        except FileExistsError:
            raise ExportError(
                f"Version {version} of {month} is reserved by another or an interrupted write; "
                f"use version {self.next_version(month)}."
            ) from None
        # A writer that renamed its staging directory just before our mkdir has already won.
        if target.exists():
            shutil.rmtree(staging, ignore_errors=True)
            raise ExportError(f"Version {version} of {month} already exists and versions are immutable.")
        data_file = staging / DATA_FILE
        pq.write_table(table, data_file, compression="zstd")
        _fsync_file(data_file)
        crash_point("version_write")
        _pause_for_tests()
        full = {
            "schema_version": SCHEMA_VERSION,
            "month": month,
            "version": version,
            "row_count": table.num_rows,
            "files": {DATA_FILE: _sha256(data_file)},
            "created_at": _now(),
            **fields,
        }
        _write_json_atomic(staging / MANIFEST_FILE, full)
        _fsync_dir(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, target)
        _fsync_dir(target.parent)
        return VersionInfo(month, version, target, full)

    def manifest(self, month: str, version: int) -> dict:
        """Manifest of a complete version."""
        return _read_manifest(self._complete_version_path(month, version))

    def read_version(self, month: str, version: int) -> pd.DataFrame:
        """Allocation rows of a complete version, typed by ALLOCATION_SCHEMA."""
        path = self._complete_version_path(month, version)
        return _read_rows(path / DATA_FILE)

    def verify(self, month: str, version: int) -> bool:
        """True when every file of the version matches its sha256 in the manifest and none is extra."""
        path = self._complete_version_path(month, version)
        return _verify_dir(path, _read_manifest(path))

    # ---------------------------------------------------------------- final

    def write_final(self, month: str, version: int, extra: dict) -> VersionInfo:
        """Publish a verified version as the month's official copy, replacing any earlier one atomically."""
        month, version = _check_month(month), _check_version(version)
        source = self._complete_version_path(month, version)
        source_manifest = _read_manifest(source)
        if not _verify_dir(source, source_manifest):
            raise ExportError(f"Version {version} of {month} fails its checksums and cannot be finalized.")
        clash = sorted(set(extra) & set(STORE_FIELDS))
        if clash:
            raise ExportError(f"Final manifest fields {clash} belong to the store and cannot be set.")
        _check_json(extra)
        store_dir = self.final_store_dir / f"month={month}"
        store_dir.mkdir(parents=True, exist_ok=True)
        target = store_dir / f"v{version}-{uuid.uuid4().hex[:12]}"
        target.mkdir()
        for name in source_manifest["files"]:
            shutil.copyfile(source / name, target / name)
            _fsync_file(target / name)
        crash_point("final_copy")
        _pause_for_tests()
        full = {
            # A version's standing describes that version; the final copy's own history is withdrawn_finals.
            **{k: v for k, v in source_manifest.items() if k != "standing"},
            "status": FINAL_STATUS,
            "source": f"allocations/month={month}/version={version}",
            "finalized_at": _now(),
            **extra,
        }
        _write_json_atomic(target / MANIFEST_FILE, full)
        _fsync_dir(target)
        link = self.final_path(month)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() and not link.is_symlink():
            raise ExportError(f"{link} is not managed by the export store; move it away before finalizing.")
        previous = link.resolve() if link.is_symlink() else None
        # The new link is made outside final/ so that no glob over final/ ever sees it half-made.
        tmp_link = self.final_store_dir / f".link-{uuid.uuid4().hex}"
        os.symlink(os.path.relpath(target, link.parent), tmp_link)
        os.replace(tmp_link, link)
        _fsync_dir(link.parent)
        if previous is not None and previous != target.resolve():
            shutil.rmtree(previous, ignore_errors=True)
        return VersionInfo(month, version, link, full)

    def final_manifest(self, month: str) -> dict | None:
        """Manifest of the month's official copy, or None when the month was never finalized."""
        link = self.final_path(month)
        if not (link / MANIFEST_FILE).is_file():
            return None
        return _read_manifest(link)

    def read_final(self, month: str) -> pd.DataFrame:
        """Allocation rows of the month's official copy."""
        if self.final_manifest(month) is None:
            raise ExportError(f"Month {month} has no final allocation.")
        return _read_rows(self.final_path(month) / DATA_FILE)

    def verify_final(self, month: str) -> bool:
        """True when the official copy's files match its manifest."""
        manifest = self.final_manifest(month)
        return manifest is not None and _verify_dir(self.final_path(month), manifest)

    def withdraw_final(self, month: str) -> bool:
        """Remove a month's official copy (an unlocked month has none); True when one was there."""
        link = self.final_path(month)
        if not link.is_symlink():
            if link.exists():
                raise ExportError(f"{link} is not managed by the export store; move it away.")
            return False
        target = link.resolve()
        link.unlink()
        _fsync_dir(link.parent)
        shutil.rmtree(target, ignore_errors=True)
        return True

    def audit_anchors(self) -> list[dict]:
        """The audit chain heads written into every version manifest and final manifest."""
        found = []
        for month in self.months():
            for version in self.versions(month):
                anchor = self.manifest(month, version).get("audit_anchor")
                if isinstance(anchor, dict):
                    found.append({**anchor, "where": f"the manifest of {month} version {version}"})
            final = self.final_manifest(month)
            if final is not None and isinstance(final.get("final_audit_anchor"), dict):
                found.append({**final["final_audit_anchor"], "where": f"the final manifest of {month}"})
        return found

    def write_standing(self, month: str, version: int, standing: dict) -> dict:
        """Record where a version stands now (final, withdrawn final, proposed) in its manifest, atomically.

        The one field of a version's manifest that changes after it is written; the data and checksums never do."""
        path = self._complete_version_path(month, version)
        _check_json(standing)
        manifest = {**_read_manifest(path), "standing": standing}
        _write_json_atomic(path / MANIFEST_FILE, manifest)
        return manifest

    def report_path(self, month: str, version: int) -> Path:
        """The HTML report of a version, beside its manifest."""
        return self.version_path(month, version) / REPORT_FILE

    def write_report(self, month: str, version: int, html: str) -> Path:
        """Write (or rewrite, e.g. once finalized) a complete version's report, atomically."""
        path = self._complete_version_path(month, version) / REPORT_FILE
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, path)
        return path

    # -------------------------------------------------------------- exports

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
        month = _check_month(month)
        out = self._check_target(out, force)
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
            path = self._complete_version_path(month, version)
            manifest = _read_manifest(path)
            source = path / DATA_FILE
        if not _verify_dir(source.parent, manifest):
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

    def _check_target(self, out: Path | str, force: bool) -> Path:
        """Where an export may go (check_target)."""
        return check_target(self.home, out, force, self.protected)

    # ----------------------------------------------------------------- diff

    def diff(self, month: str, from_version: int, to_version: int, write: bool = True) -> dict:
        """Compare two versions: allocations added, removed and moved, and the change of every metric."""
        month = _check_month(month)
        before = self.read_version(month, from_version)
        after = self.read_version(month, to_version)
        old = _allocated_map(before)
        new = _allocated_map(after)
        added = [{"request_id": r, "resource_id": new[r]} for r in sorted(new.keys() - old.keys())]
        removed = [{"request_id": r, "resource_id": old[r]} for r in sorted(old.keys() - new.keys())]
        moved = [
            {"request_id": r, "from_resource": old[r], "to_resource": new[r]}
            for r in sorted(old.keys() & new.keys())
            if old[r] != new[r]
        ]
        from_metrics = {**_manifest_figures(self.manifest(month, from_version)), **_row_metrics(before)}
        to_metrics = {**_manifest_figures(self.manifest(month, to_version)), **_row_metrics(after)}
        metrics = {}
        for name in sorted(from_metrics.keys() | to_metrics.keys()):
            a, b = from_metrics.get(name), to_metrics.get(name)
            change = None if a is None or b is None else _tidy_number(b - a)
            metrics[name] = {"from": a, "to": b, "change": change}
        result = {
            "month": month,
            "from": int(from_version),
            "to": int(to_version),
            "added": added,
            "removed": removed,
            "moved": moved,
            "counts": {
                "added": len(added),
                "removed": len(removed),
                "moved": len(moved),
                "unchanged": sum(1 for r in old.keys() & new.keys() if old[r] == new[r]),
            },
            "metrics": metrics,
        }
        if write:
            path = self.diff_path(month, int(from_version), int(to_version))
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_json_atomic(path, result)
            result["path"] = str(path)
        return result

    # -------------------------------------------------------------- helpers

    def _complete_version_path(self, month: str, version: int) -> Path:
        path = self.version_path(month, version)
        if not (path / MANIFEST_FILE).is_file():
            raise ExportError(f"Version {version} of {month} does not exist or is incomplete.")
        return path

    def _version_dirs(self, base: Path, month: str) -> list[tuple[int, Path]]:
        month_dir = base / f"month={_check_month(month)}"
        if not month_dir.is_dir():
            return []
        found = []
        for entry in month_dir.iterdir():
            match = _VERSION_DIR.match(entry.name)
            if match and entry.is_dir():
                found.append((int(match.group(1)), entry))
        return found


# ------------------------------------------------------------------ validation


def check_target(home: Path, out: Path | str, force: bool, protected: tuple[Path, ...] = ()) -> Path:
    """Where a file the CLI writes on request (an export, a report) may go: a regular file outside the home
    folder (where versions, the official export and the control store live), in a folder that exists or
    can be made, never through a symbolic link, replaced only with force. The absolute path, else ExportError."""
    if not str(out).strip() or Path(out).name in ("", ".", ".."):
        raise ExportError("--out needs a file name.")
    out = Path(out).expanduser()
    if out.is_symlink():
        raise ExportError(f"{out} is a symbolic link; give the real path of the file to write.")
    out = out.absolute()
    home = Path(home).resolve()
    if out.resolve() == home or home in out.resolve().parents:
        raise ExportError(f"{out} is inside the home folder {home}, where the product keeps its versions, "
                          f"official exports and control store; write the file elsewhere.")
    for kept in protected:
        kept = Path(kept).expanduser().resolve()
        if out.resolve() == kept or kept in out.resolve().parents:
            raise ExportError(f"{out} is {'inside ' if out.resolve() != kept else ''}{kept}, which the product "
                              f"keeps (keys, roles file, control store or run data); write the file elsewhere.")
    if out.exists() and not out.is_file():
        raise ExportError(f"{out} exists and is not a regular file (a folder or a device); give a file path.")
    if out.exists() and not force:
        raise ExportError(f"{out} already exists; give --force to replace it.")
    folder = _nearest_existing(out.parent)
    if not folder.is_dir():
        raise ExportError(f"{folder} is not a folder, so {out} cannot be written; give another path.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ExportError(f"{folder} is not writable by you, so {out} cannot be written; give another path.")
    return out


def _nearest_existing(path: Path) -> Path:
    """`path` or its nearest parent that exists."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return path


def _check_month(month: str) -> str:
    """The month, when it is YYYY-MM (it becomes part of paths, so nothing else may pass)."""
    try:
        return months.check_month(month)
    except months.MonthError:
        raise ExportError(f"Month {month!r} is not of the form YYYY-MM.") from None


def _check_version(version: int) -> int:
    """The version as a plain int, when it is a positive integer."""
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 1:
        raise ExportError(f"Version {version!r} is not a positive integer.")
    return int(version)


def _check_filter(name: str, value: str | None) -> str | None:
    """A filter value, when it is short, non-empty text without control characters."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ExportError(f"The {name} filter must be a non-empty text value.")
    if len(value) > MAX_FILTER_LENGTH or any(ord(c) < 32 for c in value):
        raise ExportError(f"The {name} filter is longer than {MAX_FILTER_LENGTH} characters or holds control characters.")
    return value


def _caller_fields(manifest: dict) -> dict:
    """The caller's manifest fields, checked and made plain JSON; a version's status is always proposed."""
    if not isinstance(manifest, dict):
        raise ExportError("The manifest must be a dict of fields.")
    clash = sorted(set(manifest) & set(STORE_FIELDS))
    if clash:
        raise ExportError(f"Manifest fields {clash} belong to the store and cannot be set by the caller.")
    fields = {"status": VERSION_STATUS, **manifest}
    if fields["status"] != VERSION_STATUS:
        raise ExportError(f"A version's manifest status must be {VERSION_STATUS!r}; finalize to publish a final copy.")
    _check_json(fields)
    return json.loads(json.dumps(fields, default=_json_default))


def _allocation_table(rows: pd.DataFrame, month: str, version: int) -> pa.Table:
    """Check the caller's rows against the row contract and type them as ALLOCATION_SCHEMA."""
    if not isinstance(rows, pd.DataFrame):
        raise ExportError("Allocation rows must be a pandas DataFrame.")
    rows = rows.copy()
    for name, value in (("month", month), ("version", version)):
        if name in rows.columns and len(rows) and not (rows[name].astype(str) == str(value)).all():
            raise ExportError(f"Column {name!r} of the rows disagrees with the {name} being written ({value}).")
        rows[name] = value
    if "reason_detail" not in rows.columns:
        rows["reason_detail"] = None
    missing = [c for c in ALLOCATION_COLUMNS if c not in rows.columns]
    extra = [c for c in rows.columns if c not in ALLOCATION_COLUMNS]
    if missing or extra:
        raise ExportError(f"Allocation rows must have exactly the SPEC §6 columns; missing {missing}, unexpected {extra}.")
    rows = rows[ALLOCATION_COLUMNS]
    for field in ALLOCATION_SCHEMA:
        if (not field.nullable or field.name in WRITE_REQUIRED) and rows[field.name].isna().any():
            count = int(rows[field.name].isna().sum())
            raise ExportError(f"Column {field.name!r} has {count} empty values but is required.")
    bad_status = sorted(set(rows["status"].astype(str)) - set(STATUSES))
    if bad_status:
        raise ExportError(f"Unknown status values {bad_status}; expected {', '.join(STATUSES)}.")
    has_resource = rows["resource_id"].notna()
    needs_resource = rows["status"].isin(STATUSES_WITH_RESOURCE)
    if (has_resource != needs_resource).any():
        bad = rows.loc[has_resource != needs_resource, "request_id"].head(5).tolist()
        raise ExportError(f"Rows must name a resource exactly when allocated or pinned; offending requests {bad}.")
    if rows.loc[~needs_resource, "reason"].isna().any():
        bad = rows.loc[~needs_resource & rows["reason"].isna(), "request_id"].head(5).tolist()
        raise ExportError(f"Every unallocated or excluded row needs a reason; offending requests {bad}.")
    if rows["request_id"].duplicated().any():
        bad = rows.loc[rows["request_id"].duplicated(), "request_id"].head(5).tolist()
        raise ExportError(f"Request ids must be unique in a version; duplicated {bad}.")
    rows = rows.sort_values("request_id", kind="stable").reset_index(drop=True)
    arrays = []
    for field in ALLOCATION_SCHEMA:
        column = rows[field.name]
        try:
            if pa.types.is_string(field.type):
                arrays.append(pa.array(column.astype("string"), type=field.type, from_pandas=True))
            else:
                arrays.append(pa.array(column, from_pandas=True).cast(field.type, safe=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, TypeError) as exc:
            raise ExportError(f"Column {field.name!r} cannot be stored as {field.type}: {exc}.") from None
    return pa.Table.from_arrays(arrays, schema=ALLOCATION_SCHEMA)


# ---------------------------------------------------------------------- files


def _read_rows(path: Path) -> pd.DataFrame:
    """Rows of one data file as a DataFrame typed by ALLOCATION_SCHEMA."""
    # hive partitioning is off: month and version come from the file itself.
    return _current_schema(pq.read_table(path, partitioning=None)).to_pandas()


def _current_schema(table: pa.Table) -> pa.Table:
    """A table of any schema version as ALLOCATION_SCHEMA: columns an older version lacks are null."""
    for field in ALLOCATION_SCHEMA:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table.select(ALLOCATION_COLUMNS).cast(ALLOCATION_SCHEMA)


def _read_manifest(directory: Path) -> dict:
    """The manifest of a version or final directory."""
    try:
        return json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{directory} has no manifest.") from None
    except json.JSONDecodeError:
        raise ExportError(f"The manifest in {directory} is not valid JSON.") from None


def _verify_dir(directory: Path, manifest: dict) -> bool:
    """True when the directory holds exactly the manifest's files with their checksums."""
    files = manifest.get("files") or {}
    if not files:
        return False
    on_disk = {p.name for p in directory.iterdir() if p.is_file() and p.name not in SIDECAR_FILES}
    if on_disk != set(files):
        return False
    return all(_sha256(directory / name) == digest for name, digest in files.items())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json_atomic(path: Path, payload: dict) -> None:
    """Write JSON to a temporary file, fsync it and rename it over the path."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, default=_json_default)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pause_for_tests() -> None:
    """Sleep when the test hook asks for it, so a test can kill a writer mid-version."""
    pause = os.environ.get(TEST_PAUSE_ENV)
    if pause:
        time.sleep(float(pause))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _check_json(payload: dict) -> None:
    try:
        json.dumps(payload, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ExportError(f"The manifest cannot be stored as JSON: {exc}.") from None


# -------------------------------------------------------------------- queries


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
    return _current_schema(table)


def _allocated_map(rows: pd.DataFrame) -> dict[str, str]:
    """request_id -> resource_id of the rows that hold a resource (allocated or pinned)."""
    allocated = rows[rows["resource_id"].notna()]
    return dict(zip(allocated["request_id"].tolist(), allocated["resource_id"].tolist()))


def _row_metrics(rows: pd.DataFrame) -> dict[str, float]:
    """Counts computed from the rows themselves (batch.metrics.counts), comparable between any two versions."""
    allocated = rows["resource_id"].notna()
    found = {k: v for k, v in figures.counts(rows).items() if v is not None}
    return {**found, "allocated_units": int(rows.loc[allocated, "units"].sum()),
            "cost_total": int(rows.loc[allocated, "cost"].sum())}


def _manifest_figures(manifest: dict) -> dict[str, float]:
    """A manifest's numeric metrics and the solver's objective, bound and gap (the gap as batch.metrics defines it)."""
    solver = manifest.get("solver")
    solver = solver if isinstance(solver, dict) else {}
    found = _numeric_metrics({k: solver.get(k) for k in ("objective", "bound")})
    gap = figures.relative_gap(found.get("objective"), found.get("bound"))
    if gap is not None:
        found["gap"] = gap
    return {**found, **_numeric_metrics(manifest.get("metrics"))}


def _numeric_metrics(metrics: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a manifest's metrics, nested names joined with dots."""
    found: dict[str, float] = {}
    if not isinstance(metrics, dict):
        return found
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            found.update(_numeric_metrics(value, prefix=f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            found[name] = value
    return found


def _tidy_number(value: float) -> float:
    return round(value, 9) if isinstance(value, float) else value


# ------------------------------------------------------------------ CSV, XLSX


def _write_csv(table: pa.Table, path: Path | BinaryIO) -> None:
    """The rows as UTF-8 CSV, text neutralized, numbers as numbers."""
    frame = table.to_pandas()
    for column in frame.columns:
        if pa.types.is_string(table.schema.field(column).type):
            frame[column] = sanitize_series(frame[column])
    frame.to_csv(path, index=False, encoding="utf-8", lineterminator="\n")
