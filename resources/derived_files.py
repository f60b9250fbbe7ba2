"""Results derived from files that never change under their digest, kept as JSON under ``home/cache``.

A version's figures against the landed inputs (batch.health.version_figures) and the summary of a month's
landed files (batch.inputs.landing_summary) take 30-120 ms each at 20,000 requests; they depend only on the
bytes of the files they are computed from, so they are kept under the sha256 of those bytes and never go
stale: a changed file has another digest. The run's export step computes them once when it writes a
version; the admin view and `batch-admin status` read them, and compute (and keep) one that is missing.
The folder may be deleted at any time; nothing else reads it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batch.names import CACHE_DIR
from resources.manifests import write_json_atomic

# Files kept per folder (one folder per month and kind); the oldest go first.
KEEP_PER_FOLDER = 32
KEY_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class DerivedFiles:
    """`kept(key, compute)`: compute's JSON result, read from ``home/cache/<key>.json`` when kept before."""

    home: Path

    def kept(self, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The result kept under `key` (parts like "figures/2026-12/<digest>"), else compute()'s, kept.

        Either way the caller gets the JSON form (what it would read next time), so a page shows the same
        whether its figures were computed now or before. A file that cannot be read is computed again; a
        home that cannot be written to still gets the result."""
        path = self._path(key)
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            pass
        found = compute()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, found)
            _prune(path.parent)
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, TypeError, ValueError):  # not writable, or a value JSON does not hold as it is
            return dict(json.loads(json.dumps(found, default=str)))

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not all(KEY_PART.fullmatch(part) for part in parts):
            raise ValueError(f"A kept result's key is folder names and a file name of letters, digits, '_', '.' "
                             f"and '-': {key!r}.")
        return self.home.joinpath(CACHE_DIR, *parts[:-1], f"{parts[-1]}.json")


def _prune(folder: Path) -> None:
    """Keep the newest KEEP_PER_FOLDER files of a folder."""
    files = sorted(folder.glob("*.json"), key=lambda path: path.stat().st_mtime_ns)
    for path in files[:-KEEP_PER_FOLDER]:
        path.unlink(missing_ok=True)
