"""Immutable versions of a month's allocation, its official (final) copy, and what is recorded beside them.

A version is written completely in ``.staging`` (data files first, manifest last, each
fsynced) and then renamed into ``allocations/`` in one atomic directory rename, so a
reader globbing ``allocations/*/*/*.parquet`` never sees a half version. A staging
directory left by a crash keeps its version number reserved, so numbers are never reused.
This module imports nothing from Dagster.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from batch.faults import crash_point
from batch.names import EXPORT_PAUSE_VAR
from resources.derived_files import DerivedFiles
from resources.export_paths import (
    DATA_FILE,
    MANIFEST_FILE,
    REPORT_FILE,
    ExportError,
    ExportPaths,
    check_month,
    check_version,
)
from resources.manifests import (
    FINAL_STATUS,
    caller_fields,
    check_json,
    final_fields,
    fsync_dir,
    fsync_file,
    now,
    read_manifest,
    sha256,
    verify_dir,
    write_json_atomic,
    write_text_atomic,
)

if TYPE_CHECKING:
    import pandas as pd



@dataclass
class VersionInfo:
    """A complete version (or final copy) of a month's allocation and its manifest."""

    month: str
    version: int
    path: Path
    manifest: dict


class VersionStore(ExportPaths, DerivedFiles):
    """Versions and final copies of allocations under ``home/exports``; pure Python, no Dagster."""

    # ------------------------------------------------------------- versions

    def months(self) -> list[str]:
        """Months that have at least one complete version."""
        return [month for month in self.month_names(self.allocations_dir) if self.versions(month)]

    def versions(self, month: str) -> list[int]:
        """Complete versions of a month (those with a manifest), ascending."""
        return sorted(v for v, d in self.version_dirs(self.allocations_dir, month) if (d / MANIFEST_FILE).is_file())

    def latest_version(self, month: str) -> int | None:
        """Highest complete version of a month, or None."""
        versions = self.versions(month)
        return versions[-1] if versions else None

    def next_version(self, month: str) -> int:
        """1 + the highest version that is complete or reserved by a (possibly crashed) write."""
        used = [v for v, _ in self.version_dirs(self.allocations_dir, month)]
        used += [v for v, _ in self.version_dirs(self.staging_dir, month)]
        return max(used, default=0) + 1

    def write_version(self, month: str, version: int, rows: pd.DataFrame, manifest: dict) -> VersionInfo:
        """Write an immutable version atomically: data, then manifest, then one directory rename."""
        # Deferred (as in read_version): the row contract's pandas and pyarrow, which readers of versions'
        # manifests and folders (`batch-admin status`: 0.5 s of its 2 s) do not need.
        import pyarrow.parquet as pq

        from resources.allocation_rows import SCHEMA_VERSION, allocation_table

        month, version = check_month(month), check_version(version)
        fields = caller_fields(manifest)
        table = allocation_table(rows, month, version)
        target = self.version_path(month, version)
        if target.exists():
            raise ExportError(f"Version {version} of {month} already exists and versions are immutable.")
        staging = self.staging_path(month, version)
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
        fsync_file(data_file)
        crash_point("version_write")
        _pause_for_tests()
        full = {
            "schema_version": SCHEMA_VERSION,
            "month": month,
            "version": version,
            "row_count": table.num_rows,
            "files": {DATA_FILE: sha256(data_file)},
            "created_at": now(),
            **fields,
        }
        write_json_atomic(staging / MANIFEST_FILE, full)
        fsync_dir(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, target)
        fsync_dir(target.parent)
        return VersionInfo(month, version, target, full)

    def manifest(self, month: str, version: int) -> dict:
        """Manifest of a complete version."""
        return read_manifest(self.complete_version_path(month, version))

    def read_version(self, month: str, version: int) -> pd.DataFrame:
        """Allocation rows of a complete version, typed by ALLOCATION_SCHEMA."""
        from resources.allocation_rows import read_rows  # deferred: see write_version

        path = self.complete_version_path(month, version)
        return read_rows(path / DATA_FILE)

    def verify(self, month: str, version: int) -> bool:
        """True when every file of the version matches its sha256 in the manifest and none is extra."""
        path = self.complete_version_path(month, version)
        return verify_dir(path, read_manifest(path))

    def rows_digest(self, month: str, version: int, final: bool = False) -> str | None:
        """The sha256 of a version's rows file (or the official copy's), as its manifest records it; None
        when there is no such version or copy."""
        try:
            manifest = self.final_manifest(month) if final else self.manifest(month, version)
        except ExportError:
            return None
        return ((manifest or {}).get("files") or {}).get(DATA_FILE)

    def complete_version_path(self, month: str, version: int) -> Path:
        """The folder of a complete version, else ExportError."""
        path = self.version_path(month, version)
        if not (path / MANIFEST_FILE).is_file():
            raise ExportError(f"Version {version} of {month} does not exist or is incomplete.")
        return path

    # ---------------------------------------------------------------- final

    def write_final(self, month: str, version: int, extra: dict) -> VersionInfo:
        """Publish a verified version as the month's official copy, replacing any earlier one atomically."""
        month, version = check_month(month), check_version(version)
        source = self.complete_version_path(month, version)
        source_manifest = read_manifest(source)
        if not verify_dir(source, source_manifest):
            raise ExportError(f"Version {version} of {month} fails its checksums and cannot be finalized.")
        extra = final_fields(extra)
        store_dir = self.month_dir(self.final_store_dir, month)
        store_dir.mkdir(parents=True, exist_ok=True)
        target = store_dir / f"v{version}-{uuid.uuid4().hex[:12]}"
        target.mkdir()
        for name in source_manifest["files"]:
            shutil.copyfile(source / name, target / name)
            fsync_file(target / name)
        crash_point("final_copy")
        _pause_for_tests()
        full = {
            # A version's standing describes that version; the final copy's own history is withdrawn_finals.
            **{k: v for k, v in source_manifest.items() if k != "standing"},
            "status": FINAL_STATUS,
            "source": source.relative_to(self.root).as_posix(),
            "finalized_at": now(),
            **extra,
        }
        write_json_atomic(target / MANIFEST_FILE, full)
        fsync_dir(target)
        link = self.final_path(month)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() and not link.is_symlink():
            raise ExportError(f"{link} is not managed by the export store; move it away before finalizing.")
        previous = link.resolve() if link.is_symlink() else None
        # The new link is made outside final/ so that no glob over final/ ever sees it half-made.
        tmp_link = self.final_store_dir / f".link-{uuid.uuid4().hex}"
        os.symlink(os.path.relpath(target, link.parent), tmp_link)
        os.replace(tmp_link, link)
        fsync_dir(link.parent)
        if previous is not None and previous != target.resolve():
            shutil.rmtree(previous, ignore_errors=True)
        return VersionInfo(month, version, link, full)

    def final_manifest(self, month: str) -> dict | None:
        """Manifest of the month's official copy, or None when the month was never finalized."""
        link = self.final_path(month)
        if not (link / MANIFEST_FILE).is_file():
            return None
        return read_manifest(link)

    def read_final(self, month: str) -> pd.DataFrame:
        """Allocation rows of the month's official copy."""
        if self.final_manifest(month) is None:
            raise ExportError(f"Month {month} has no final allocation.")
        from resources.allocation_rows import read_rows  # deferred: see write_version

        return read_rows(self.final_path(month) / DATA_FILE)

    def verify_final(self, month: str) -> bool:
        """True when the official copy's files match its manifest."""
        manifest = self.final_manifest(month)
        return manifest is not None and verify_dir(self.final_path(month), manifest)

    def withdraw_final(self, month: str) -> bool:
        """Remove a month's official copy (an unlocked month has none); True when one was there."""
        link = self.final_path(month)
        if not link.is_symlink():
            if link.exists():
                raise ExportError(f"{link} is not managed by the export store; move it away.")
            return False
        target = link.resolve()
        link.unlink()
        fsync_dir(link.parent)
        shutil.rmtree(target, ignore_errors=True)
        return True

    # ------------------------------------------------- beside the versions

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
        path = self.complete_version_path(month, version)
        check_json(standing)
        manifest = {**read_manifest(path), "standing": standing}
        write_json_atomic(path / MANIFEST_FILE, manifest)
        return manifest

    def write_report(self, month: str, version: int, html: str) -> Path:
        """Write (or rewrite, e.g. once finalized) a complete version's report, atomically."""
        path = self.complete_version_path(month, version) / REPORT_FILE
        write_text_atomic(path, html)
        return path


def _pause_for_tests() -> None:
    """Sleep when the test hook asks for it, so a test can kill a writer mid-version."""
    pause = os.environ.get(EXPORT_PAUSE_VAR)
    if pause:
        time.sleep(float(pause))
