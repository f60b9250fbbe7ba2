"""Manifests and checksums of version folders: the fields the store owns, sha256, durable JSON writes.

This module imports nothing from Dagster.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from resources.export_paths import MANIFEST_FILE, SIDECAR_FILES, ExportError

# Fields the store owns in every manifest; a caller may not set them.
STORE_FIELDS = ("schema_version", "month", "version", "row_count", "files", "created_at", "standing")
VERSION_STATUS = "proposed"
FINAL_STATUS = "final"


def caller_fields(manifest: dict) -> dict:
    """The caller's manifest fields, checked and made plain JSON; a version's status is always proposed."""
    if not isinstance(manifest, dict):
        raise ExportError("The manifest must be a dict of fields.")
    clash = sorted(set(manifest) & set(STORE_FIELDS))
    if clash:
        raise ExportError(f"Manifest fields {clash} belong to the store and cannot be set by the caller.")
    fields = {"status": VERSION_STATUS, **manifest}
    if fields["status"] != VERSION_STATUS:
        raise ExportError(f"A version's manifest status must be {VERSION_STATUS!r}; finalize to publish a final copy.")
    check_json(fields)
    return json.loads(json.dumps(fields, default=_json_default))


def final_fields(extra: dict) -> dict:
    """The fields a finalization adds to the final manifest, checked: none of the store's own."""
    clash = sorted(set(extra) & set(STORE_FIELDS))
    if clash:
        raise ExportError(f"Final manifest fields {clash} belong to the store and cannot be set.")
    check_json(extra)
    return extra


def read_manifest(directory: Path) -> dict:
    """The manifest of a version or final directory."""
    try:
        return json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{directory} has no manifest.") from None
    except json.JSONDecodeError:
        raise ExportError(f"The manifest in {directory} is not valid JSON.") from None


def verify_dir(directory: Path, manifest: dict) -> bool:
    """True when the directory holds exactly the manifest's files with their checksums."""
    files = manifest.get("files") or {}
    if not files:
        return False
    on_disk = {p.name for p in directory.iterdir() if p.is_file() and p.name not in SIDECAR_FILES}
    if on_disk != set(files):
        return False
    return all(sha256(directory / name) == digest for name, digest in files.items())


def sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 1-MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write JSON to a temporary file, fsync it and rename it over the path."""
    write_text_atomic(path, json.dumps(payload, indent=2, default=_json_default) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write text to a temporary file beside the path, fsync it and rename it over the path."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def fsync_file(path: Path) -> None:
    """Flush a file's data to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def now() -> str:
    """The current UTC time as a manifest writes it (ISO 8601, whole seconds)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def check_json(payload: dict) -> None:
    """ExportError unless the payload can be stored as strict JSON."""
    try:
        json.dumps(payload, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ExportError(f"The manifest cannot be stored as JSON: {exc}.") from None


def _json_default(value: Any) -> Any:
    # A numpy value exists only once numpy is loaded: readers of manifests (`batch-admin status`) do not
    # import it (0.1 s).
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.integer | np.floating | np.bool_):
        return value.item()
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
