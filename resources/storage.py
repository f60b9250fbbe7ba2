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
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import xlsxwriter

from batch import metrics as figures
from batch import months
from batch.faults import crash_point
from solvers.schema import STATUS_ALLOCATED, STATUS_EXCLUDED, STATUS_PINNED, STATUS_UNALLOCATED

SCHEMA_VERSION = 1

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
        pa.field("cost", pa.int64(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=True),
        # Why, specifically: which constraint and which resources were full (issue 6 §5).
        pa.field("reason_detail", pa.string(), nullable=True),
    ],
    metadata={"batch_admin.schema_version": str(SCHEMA_VERSION)},
)
ALLOCATION_COLUMNS = ALLOCATION_SCHEMA.names

STATUSES = (STATUS_ALLOCATED, STATUS_UNALLOCATED, STATUS_PINNED, STATUS_EXCLUDED)
STATUSES_WITH_RESOURCE = (STATUS_ALLOCATED, STATUS_PINNED)
FORMATS = ("parquet", "csv", "xlsx")

DATA_FILE = "allocations.parquet"
MANIFEST_FILE = "manifest.json"
# The version's HTML report: a view rebuilt from the data, beside the manifest and outside its checksums.
REPORT_FILE = "report.html"
SIDECAR_FILES = frozenset({MANIFEST_FILE, REPORT_FILE})
# Fields the store owns in every manifest; a caller may not set them.
STORE_FIELDS = ("schema_version", "month", "version", "row_count", "files", "created_at")
VERSION_STATUS = "proposed"
FINAL_STATUS = "final"

# Test hook: seconds to sleep after the data files are written and before the manifest,
# so that a test can SIGKILL a writer mid-version.
TEST_PAUSE_ENV = "BATCH_ADMIN_EXPORT_TEST_PAUSE_S"

# OWASP CSV injection: cells starting with these characters are neutralized.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_PATTERN = r"^[=+\-@\t\r]"

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


def sanitize_cell(value: Any) -> Any:
    """Neutralize text a spreadsheet would run as a formula (OWASP); other values pass through."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _sanitize_series(series: pd.Series) -> pd.Series:
    """Vectorized sanitize_cell for a column of text."""
    text = series.astype("string")
    risky = text.str.contains(_FORMULA_PATTERN, regex=True, na=False)
    if not risky.any():
        return series
    return text.where(~risky, "'" + text).astype(object).where(text.notna(), None)


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
            **source_manifest,
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
    ) -> dict:
        """Write a month's allocation (latest, a given or the final version), optionally filtered, to one file."""
        month = _check_month(month)
        out = self._check_target(out, force)
        if fmt not in FORMATS:
            raise ExportError(f"Unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}.")
        if final and version is not None:
            raise ExportError("Choose either a version or the final allocation, not both.")
        service = _check_filter("service", service)
        resource = _check_filter("resource", resource)
        status = _check_filter("status", status)
        if status is not None and status not in STATUSES:
            raise ExportError(f"Unknown status {status!r}; expected one of {', '.join(STATUSES)}.")
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
        table = _query_rows(source, service=service, resource=resource, status=status)
        filters = {k: v for k, v in (("service", service), ("resource", resource), ("status", status)) if v is not None}
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportError(f"Cannot create the folder {out.parent} for the export: {exc.strerror or exc}.") from None
        # Written beside the target and renamed over it: a reader never sees half a file.
        tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            if fmt == "parquet":
                pq.write_table(table, tmp, compression="zstd")
            elif fmt == "csv":
                _write_csv(table, tmp)
            else:
                _write_xlsx(table, tmp, manifest=manifest, final=final, filters=filters)
            os.replace(tmp, out)
        except OSError as exc:
            raise ExportError(f"Cannot write the export to {out}: {exc.strerror or exc}.") from None
        finally:
            tmp.unlink(missing_ok=True)
        return {
            "path": str(out),
            "rows": table.num_rows,
            "format": fmt,
            "month": month,
            "version": version,
            "final": final,
            "filters": filters,
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
        if not field.nullable and rows[field.name].isna().any():
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
    return pq.read_table(path, schema=ALLOCATION_SCHEMA, partitioning=None).to_pandas()


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
  AND ($resource::VARCHAR IS NULL OR resource_id = $resource)
  AND ($status::VARCHAR IS NULL OR status = $status)
ORDER BY request_id
"""


def _query_rows(path: Path, *, service: str | None, resource: str | None, status: str | None) -> pa.Table:
    """Rows of one data file matching the filters; values are bound as parameters, never pasted into SQL."""
    params = {"path": str(path), "service": service, "resource": resource, "status": status}
    with duckdb.connect() as con:
        table = con.sql(_FILTER_SQL, params=params).to_arrow_table()
    return table.cast(ALLOCATION_SCHEMA)


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


def _write_csv(table: pa.Table, path: Path) -> None:
    """The rows as UTF-8 CSV, text neutralized, numbers as numbers."""
    frame = table.to_pandas()
    for column in frame.columns:
        if pa.types.is_string(table.schema.field(column).type):
            frame[column] = _sanitize_series(frame[column])
    frame.to_csv(path, index=False, encoding="utf-8", lineterminator="\n")


def _aggregates(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The XLSX data sheets after the summary, computed from the (possibly filtered) allocation rows."""
    allocated = frame[frame["resource_id"].notna()]
    per_resource = (
        allocated.groupby(["resource_id", "service", "region"], as_index=False)
        .agg(requests=("request_id", "count"), units=("units", "sum"), cost=("cost", "sum"))
        .sort_values("resource_id")
    )
    keyed = frame.assign(
        is_allocated=frame["resource_id"].notna(),
        units_allocated=frame["units"].where(frame["resource_id"].notna(), 0),
    )
    per_service_region = keyed.groupby(["service", "region"], as_index=False).agg(
        requests=("request_id", "count"),
        allocated=("is_allocated", "sum"),
        units_allocated=("units_allocated", "sum"),
        cost=("cost", "sum"),
    )
    per_service_region["allocated"] = per_service_region["allocated"].astype("int64")
    per_service_region["unallocated"] = per_service_region["requests"] - per_service_region["allocated"]
    per_service_region["success_rate"] = per_service_region["allocated"] / per_service_region["requests"]
    service_region_columns = [
        "service", "region", "requests", "allocated", "unallocated", "success_rate", "units_allocated", "cost",
    ]
    unallocated_columns = ["request_id", "customer_id", "service", "region", "priority", "units", "status", "reason",
                           "reason_detail"]
    return {
        "per_service_region": per_service_region[service_region_columns],
        "per_resource": per_resource,
        "unallocated": frame.loc[frame["resource_id"].isna(), unallocated_columns],
        "allocations": frame,
    }


def _key_figures(frame: pd.DataFrame, manifest: dict) -> list[tuple[str, str, Any]]:
    """(name, label, value) of the summary's figures: counts from the rows, solver figures from the manifest."""
    metrics = manifest.get("metrics")
    metrics = metrics if isinstance(metrics, dict) else {}
    solver = manifest.get("solver")
    solver = solver if isinstance(solver, dict) else {}
    found = {**{k: metrics.get(k) for k in ("requested_units", "capacity_units", "utilization")},
             **{k: solver.get(k) for k in ("objective", "bound")},
             "gap": figures.relative_gap(solver.get("objective"), solver.get("bound")),
             **_row_metrics(frame)}
    return [(key, label, found[key]) for key, label in figures.HEADLINE
            if isinstance(found.get(key), int | float) and not isinstance(found.get(key), bool)]


def _summary_details(manifest: dict, final: bool, filters: dict) -> list[tuple[str, Any]]:
    """(field, value) lines that say what the workbook is."""
    rows: list[tuple[str, Any]] = [
        ("month", manifest.get("month")),
        ("version", manifest.get("version")),
        ("source", "final" if final else "version"),
        ("manifest status", manifest.get("status")),
        ("filters", ", ".join(f"{k}={v}" for k, v in filters.items()) or "none"),
        ("run id", manifest.get("run_id")),
        ("actor", manifest.get("actor")),
        ("note", manifest.get("note")),
        ("created at", manifest.get("created_at")),
        ("exported at", _now()),
    ]
    if final:
        rows += [(k.replace("_", " "), manifest.get(k)) for k in ("finalized_by", "approved_by", "finalized_at")]
    solver = manifest.get("solver")
    if isinstance(solver, dict):
        rows += [(f"solver {k}", v) for k, v in solver.items() if isinstance(v, str)]
    return rows


def _utilization_by_service(manifest: dict, filters: dict) -> pd.DataFrame:
    """Planned utilization per service from the manifest (the rows alone do not know capacity)."""
    records = (manifest.get("metrics") or {}).get("utilization_by_service_region") if isinstance(
        manifest.get("metrics"), dict) else None
    if not records or "resource" in filters:
        return pd.DataFrame(columns=["service", "capacity", "planned_units", "utilization"])
    table = pd.DataFrame.from_records(records)
    if "service" in filters:
        table = table[table["service"] == filters["service"]]
    table = table.groupby("service", as_index=False)[["capacity", "planned_units"]].sum()
    table["utilization"] = table["planned_units"] / table["capacity"].where(table["capacity"] != 0)
    return table


class _Formats:
    """The workbook's cell formats, made once per workbook."""

    def __init__(self, workbook):
        self.header = workbook.add_format({"bold": True, "bg_color": "#1F4E78", "font_color": "#FFFFFF",
                                           "border": 1, "text_wrap": True, "valign": "top"})
        self.title = workbook.add_format({"bold": True, "font_size": 14})
        self.bold = workbook.add_format({"bold": True})
        self.count = workbook.add_format({"num_format": figures.XLSX_COUNT})
        self.percent = workbook.add_format({"num_format": figures.XLSX_PERCENT})
        self.gap = workbook.add_format({"num_format": figures.XLSX_GAP})
        self.decimal = workbook.add_format({"num_format": figures.XLSX_DECIMAL})
        self.integer = workbook.add_format({"num_format": "0"})

    def for_column(self, name: str, series: pd.Series | None = None):
        """The number format of a column, by its name (ids and priorities stay plain)."""
        if name == "gap":
            return self.gap
        if name in figures.PERCENT_FIELDS or name.endswith(("_rate", "_ratio", "utilization")):
            return self.percent
        if name in ("priority", "version"):
            return self.integer
        if series is not None and pd.api.types.is_float_dtype(series) and not (series.dropna() % 1 == 0).all():
            return self.decimal
        return self.count


def _print_setup(sheet, header_rows: int = 1) -> None:
    """Landscape A4, fitted to one page wide, header rows repeated, page numbers in the footer."""
    sheet.set_landscape()
    sheet.set_paper(9)
    sheet.fit_to_pages(1, 0)
    sheet.set_margins(left=0.4, right=0.4, top=0.6, bottom=0.6)
    sheet.repeat_rows(0, header_rows - 1)
    sheet.set_footer("&L&A&RPage &P of &N")


def _write_xlsx(table: pa.Table, path: Path, *, manifest: dict, final: bool, filters: dict) -> None:
    """A workbook a manager can use: the summary (figures, charts) first, then the data sheets."""
    if table.num_rows + 1 > XLSX_MAX_ROWS:
        raise ExportError(f"{table.num_rows} rows exceed the XLSX sheet limit; export as CSV or Parquet instead.")
    frame = table.to_pandas()
    options = {
        "constant_memory": True,  # rows are streamed to disk in order; memory stays flat at 100k rows
        "strings_to_formulas": False,
        "strings_to_numbers": False,
        "strings_to_urls": False,
    }
    workbook = xlsxwriter.Workbook(str(path), options)
    formats = _Formats(workbook)
    try:
        sheets = _aggregates(frame)
        _write_summary(workbook, formats, frame, manifest, final, filters)
        for name, data in sheets.items():
            _write_sheet(workbook, name, data, formats)
    finally:
        workbook.close()


def _write_summary(workbook, formats: _Formats, frame: pd.DataFrame, manifest: dict, final: bool,
                   filters: dict) -> None:
    """The first, active sheet: the key figures, reasons and utilization with charts, then what this is."""
    sheet = workbook.add_worksheet("summary")
    sheet.activate()
    sheet.set_column(0, 0, 30)
    sheet.set_column(1, 1, 42)
    sheet.set_column(2, 2, 14)
    sheet.freeze_panes(1, 0)
    row = 0
    sheet.write_row(row, 0, ["figure", "value"], formats.header)
    sheet.autofilter(0, 0, 0, 1)
    for name, label, value in _key_figures(frame, manifest):
        row += 1
        sheet.write_string(row, 0, label, formats.bold)
        fmt = formats.for_column(name) if name in figures.PERCENT_FIELDS or name == "gap" else formats.count
        sheet.write_number(row, 1, float(value), fmt)
    reasons = figures.counts_by_reason(frame)
    if reasons:
        row += 2
        first = row + 1
        sheet.write_row(row, 0, ["not allocated, by reason", "requests"], formats.header)
        for reason, count in reasons.items():
            row += 1
            sheet.write_string(row, 0, sanitize_cell(reason.replace("_", " ")))
            sheet.write_number(row, 1, count, formats.count)
        chart = workbook.add_chart({"type": "bar"})
        chart.add_series({"name": "Requests not allocated", "categories": ["summary", first, 0, row, 0],
                          "values": ["summary", first, 1, row, 1], "fill": {"color": "#C0504D"},
                          "data_labels": {"value": True}})
        chart.set_title({"name": "Requests not allocated, by reason"})
        chart.set_legend({"none": True})
        chart.set_y_axis({"reverse": True})
        sheet.insert_chart(1, 3, chart, {"x_scale": 1.2, "y_scale": 1.0})
    utilization = _utilization_by_service(manifest, filters)
    if not utilization.empty:
        row += 2
        first = row + 1
        sheet.write_row(row, 0, ["service", "planned utilization", "capacity"], formats.header)
        for record in utilization.itertuples(index=False):
            row += 1
            sheet.write_string(row, 0, sanitize_cell(str(record.service)))
            _write_number(sheet, row, 1, record.utilization, formats.percent)
            _write_number(sheet, row, 2, record.capacity, formats.count)
        chart = workbook.add_chart({"type": "column"})
        chart.add_series({"name": "Planned utilization", "categories": ["summary", first, 0, row, 0],
                          "values": ["summary", first, 1, row, 1], "fill": {"color": "#1F4E78"},
                          "data_labels": {"value": True, "num_format": "0%"}})
        chart.set_title({"name": "Planned utilization by service"})
        chart.set_legend({"none": True})
        chart.set_y_axis({"num_format": "0%", "min": 0})
        sheet.insert_chart(17, 3, chart, {"x_scale": 1.2, "y_scale": 1.0})
    # What this workbook is (month, version, source, filters, run, who, why) after the figures.
    row += 2
    sheet.write_row(row, 0, ["about this workbook", ""], formats.header)
    for name, value in _summary_details(manifest, final, filters):
        row += 1
        sheet.write_string(row, 0, name)
        _write_any(sheet, row, 1, "" if value is None else value)
    _print_setup(sheet)
    sheet.fit_to_pages(1, 1)


def _write_sheet(workbook, name: str, data: pd.DataFrame, formats: _Formats) -> None:
    """One data sheet: styled, frozen, filtered header; numbers formatted, text neutralized; printable."""
    sheet = workbook.add_worksheet(name)
    columns = list(data.columns)
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, max(len(data), 1), len(columns) - 1)
    _print_setup(sheet)
    writers = []
    values = []
    cell_formats = []
    for col, column in enumerate(columns):
        series = data[column]
        numeric = pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series)
        cell_formats.append(formats.for_column(column, series) if numeric else None)
        sheet.set_column(col, col, _column_width(column, series), cell_formats[-1])
        if numeric:
            writers.append(_write_number)
            values.append(series.astype(float).tolist() if pd.api.types.is_bool_dtype(series) else series.tolist())
        else:
            writers.append(_write_text)
            values.append(_sanitize_series(series).tolist())
    sheet.write_row(0, 0, columns, formats.header)
    for row, record in enumerate(zip(*values), start=1):
        for col, value in enumerate(record):
            writers[col](sheet, row, col, value, cell_formats[col])


def _write_number(sheet, row: int, col: int, value: Any, fmt=None) -> None:
    if value is not None and not (isinstance(value, float) and math.isnan(value)):
        sheet.write_number(row, col, value, fmt)


def _write_text(sheet, row: int, col: int, value: Any, fmt=None) -> None:
    if value is not None and not (isinstance(value, float) and math.isnan(value)):
        sheet.write_string(row, col, value)


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
