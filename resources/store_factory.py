"""The one place the entry points (the CLI, the view) get a control store from; `batch_cli` never imports
`resources.control_store` itself (tests/actions/test_cli_imports.py). The action layer sees the store as
the core's port (`batch.ports.ControlPort`), which mypy checks `ControlStore` satisfies (`as_port`)."""

from __future__ import annotations

from batch.ports import ControlPort
from resources.control_store import ControlStore
from resources.settings import Settings

# The concrete store, for the reads the port does not list yet (status, audit, alerts, leases).
Control = ControlStore


def open_control_store(settings: Settings) -> Control:
    """The deployment's control store (one engine; `dispose()` it when done)."""
    return ControlStore(settings.control_url, roles_file=str(settings.roles_file), embedded=settings.embedded)


def migrate_control_store(url: str) -> None:
    """Apply the control store's schema migrations."""
    ControlStore(url, migrate=True).dispose()


def as_port(store: ControlStore) -> ControlPort:
    """The store as the action layer sees it (a type error here means ControlStore no longer fits the port)."""
    return store
