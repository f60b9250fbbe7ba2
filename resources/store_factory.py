"""The one place clients above the adapters get a control store from: typed as the core's port
(`batch.ports.ControlPort`), which mypy checks `ControlStore` satisfies."""

from __future__ import annotations

from pathlib import Path

from batch.ports import ControlPort
from resources.control_store import ControlStore


def open_control_store(url: str, *, roles_file: str | Path | None = None, embedded: bool = True) -> ControlStore:
    """A control store on `url` (one engine; `dispose()` it when done)."""
    return ControlStore(url, roles_file=roles_file, embedded=embedded)


def as_port(store: ControlStore) -> ControlPort:
    """The store as the action layer sees it (a type error here means ControlStore no longer fits the port)."""
    return store
