"""Exports written for a passkey-signed download, held for their person until the audit recorded them.

An export signs what was written (rows, checksum, path), so the file exists before the person's passkey
signs it; it is held here (in this server process, in a folder outside the home) until the signed export
is recorded, then downloaded once by that person. What is not downloaded within DOWNLOAD_MINUTES is removed.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from batch_view.session import Refused

DOWNLOAD_MINUTES = 10


@dataclass(frozen=True)
class Held:
    """One export held for a person: where, and once recorded, what to send."""

    id: str
    person: str
    folder: Path
    made: float
    path: Path | None = None
    name: str = ""
    media_type: str = ""
    recorded: bool = False


class Downloads:
    """The exports this server holds, by id."""

    def __init__(self) -> None:
        self._held: dict[str, Held] = {}
        self._lock = threading.Lock()

    def hold(self, person: str) -> Held:
        """A new folder for `person`'s export (and the expired ones removed)."""
        self._expire()
        held = Held(secrets.token_urlsafe(16), person, Path(tempfile.mkdtemp(prefix="batch_view_export_")),
                    time.monotonic())
        with self._lock:
            self._held[held.id] = held
        return held

    def ready(self, held_id: str, path: Path, name: str, media_type: str) -> None:
        with self._lock:
            self._held[held_id] = replace(self._held[held_id], path=path, name=name, media_type=media_type)

    def owned(self, held_id: str, person: str) -> None:
        """Refuse an export that is not held for `person` (or no longer held)."""
        with self._lock:
            held = self._held.get(held_id)
        if held is None or held.person != person or held.path is None:
            raise Refused("This export is not held for you any more: ask for it again.")

    def release(self, held_id: str) -> None:
        """The export was recorded: its person may download it now."""
        with self._lock:
            self._held[held_id] = replace(self._held[held_id], recorded=True)

    def take(self, held_id: str, person: str | None) -> Held | None:
        """A recorded export for its person, handed over once (the caller removes its folder)."""
        with self._lock:
            held = self._held.get(held_id)
            if held is None or not held.recorded or held.person != person:
                return None
            return self._held.pop(held_id)

    def drop(self, held_id: str) -> None:
        with self._lock:
            held = self._held.pop(held_id, None)
        if held is not None:
            shutil.rmtree(held.folder, ignore_errors=True)

    def _expire(self) -> None:
        cutoff = time.monotonic() - DOWNLOAD_MINUTES * 60
        with self._lock:
            old = [key for key, held in self._held.items() if held.made < cutoff]
        for key in old:
            self.drop(key)
