"""Where the export store keeps things, and where a file written on request may go.

Layout under ``<home>/exports`` (SPEC §6, details in docs/exports.md):

    allocations/month=YYYY-MM/version=N/allocations.parquet + manifest.json   immutable versions
    final/month=YYYY-MM -> ../.final_store/month=YYYY-MM/vN-<token>/          official copy (symlink)
    diffs/month=YYYY-MM/vN_to_vM.json                                         comparisons
    .staging/month=YYYY-MM/version=N/                                         writes in progress

Every path of that layout is built here, from a month and version checked here. This module imports
nothing from Dagster.
"""

from __future__ import annotations

import numbers
import os
import re
from pathlib import Path

from batch import months
from batch.names import EXPORTS_DIR

DATA_FILE = "allocations.parquet"
MANIFEST_FILE = "manifest.json"
# The version's HTML report: a view rebuilt from the data, beside the manifest and outside its checksums.
REPORT_FILE = "report.html"
SIDECAR_FILES = frozenset({MANIFEST_FILE, REPORT_FILE})

_VERSION_DIR = re.compile(r"^version=(\d+)$")


class ExportError(Exception):
    """A request to the export store that cannot be honoured, told in one sentence."""


class ExportPaths:
    """The folders and files of the export store under ``home/exports``."""

    def __init__(self, home: Path, protected: tuple[Path, ...] = ()):
        """protected: files and folders outside the home that no export may write (keys, roles file...)."""
        self.home = Path(home)
        self.protected = protected
        self.root = self.home / EXPORTS_DIR
        self.allocations_dir = self.root / "allocations"
        self.final_dir = self.root / "final"
        self.final_store_dir = self.root / ".final_store"
        self.diffs_dir = self.root / "diffs"
        self.staging_dir = self.root / ".staging"

    def month_dir(self, base: Path, month: str) -> Path:
        """The folder of a month under one of the store's folders (allocations, staging, final...)."""
        return base / f"month={check_month(month)}"

    def version_path(self, month: str, version: int) -> Path:
        """Directory of one version (it exists only once the version is complete)."""
        return self.month_dir(self.allocations_dir, month) / f"version={check_version(version)}"

    def staging_path(self, month: str, version: int) -> Path:
        """Directory a version is written in before its rename into allocations/."""
        return self.month_dir(self.staging_dir, month) / f"version={check_version(version)}"

    def final_path(self, month: str) -> Path:
        """Path of a month's official copy (a symlink to the current final directory)."""
        return self.month_dir(self.final_dir, month)

    def diff_path(self, month: str, from_version: int, to_version: int) -> Path:
        """File a comparison of two versions is written to."""
        return self.month_dir(self.diffs_dir, month) / f"v{from_version}_to_v{to_version}.json"

    def manifest_path(self, month: str, version: int) -> Path:
        """The manifest of a version (there once the version is complete)."""
        return self.version_path(month, version) / MANIFEST_FILE

    def report_path(self, month: str, version: int) -> Path:
        """The HTML report of a version, beside its manifest."""
        return self.version_path(month, version) / REPORT_FILE

    def version_dirs(self, base: Path, month: str) -> list[tuple[int, Path]]:
        """(version, folder) of every version folder of a month under `base`, complete or not."""
        month_dir = self.month_dir(base, month)
        if not month_dir.is_dir():
            return []
        found = []
        for entry in month_dir.iterdir():
            match = _VERSION_DIR.match(entry.name)
            if match and entry.is_dir():
                found.append((int(match.group(1)), entry))
        return found

    def month_names(self, base: Path) -> list[str]:
        """The well-formed months that have a folder under `base`, sorted."""
        if not base.is_dir():
            return []
        found = (entry.name.removeprefix("month=") for entry in base.iterdir() if entry.name.startswith("month="))
        return sorted(name for name in found if months.MONTH_RE.fullmatch(name))


def check_month(month: str) -> str:
    """The month, when it is YYYY-MM (it becomes part of paths, so nothing else may pass)."""
    try:
        return months.check_month(month)
    except months.MonthError:
        raise ExportError(f"Month {month!r} is not of the form YYYY-MM.") from None


def check_version(version: int) -> int:
    """The version as a plain int, when it is a positive integer."""
    if isinstance(version, bool) or not isinstance(version, numbers.Integral) or version < 1:
        raise ExportError(f"Version {version!r} is not a positive integer.")
    return int(version)


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
    try:  # once: a link in the path that vanishes while it is read makes realpath raise
        real = out.resolve()
    except OSError as exc:
        raise ExportError(f"{out} changed while it was checked ({exc.strerror}); nothing was written.") from None
    if real == home or home in real.parents:
        raise ExportError(f"{out} is inside the home folder {home}, where the product keeps its versions, "
                          f"official exports and control store; write the file elsewhere.")
    for kept in protected:
        kept = Path(kept).expanduser().resolve()
        if real == kept or kept in real.parents:
            raise ExportError(f"{out} is {'inside ' if real != kept else ''}{kept}, which the product "
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
