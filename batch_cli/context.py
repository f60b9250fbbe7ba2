"""What every command works with: the settings, the stores (one engine per process) and the acting person's key."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batch import actions
from batch.identity import (
    DEFAULT_TICKET_MINUTES,
    KEY_VAR,
    Signed,
    default_key_path,
    load_private_key,
    make_ticket,
    sign,
)
from resources.settings import DEFAULT_ROLES_FILE, Settings
from resources.version_store import VersionStore

if TYPE_CHECKING:
    from resources.storage import ExportStore
    from resources.store_factory import Control


def settings() -> Settings:
    return Settings.from_env()


def now() -> datetime:
    return datetime.now(UTC)


def exports() -> ExportStore:
    """The export store under the home folder."""
    # Deferred: start-up speed; pandas, pyarrow and DuckDB load only for the commands that read exports.
    from resources.storage import ExportStore

    return ExportStore(settings().home, protected=protected_paths())


def versions() -> VersionStore:
    """The versions and official copies under the home folder, as the export store keeps them (no pandas,
    pyarrow or DuckDB: what `status` reads)."""
    return VersionStore(settings().home, protected=protected_paths())


def protected_paths() -> tuple[Path, ...]:
    """The roles file, people's keys (the key folder and BATCH_ADMIN_KEY), and the stores outside the home."""
    keys = [default_key_path("x").parent]
    if os.environ.get(KEY_VAR):
        keys.append(Path(os.environ[KEY_VAR]))
    return settings().protected_paths(tuple(keys))


# The control stores this process opened: one engine per URL and roles file.
_STORES: dict[tuple[str, str], Control] = {}


def store() -> Control:
    """The control store: one engine for this process (per URL)."""
    current = settings()
    key = (current.control_url, str(current.roles_file))
    if key not in _STORES:
        # Deferred: start-up speed; SQLAlchemy loads only for the commands that open the store.
        from resources.store_factory import open_control_store

        _STORES[key] = open_control_store(current)
    return _STORES[key]


def close_stores() -> None:
    """Close the connections of every control store this process opened (PostgreSQL then ends their
    sessions at once, rather than when it notices the process gone)."""
    while _STORES:
        _STORES.popitem()[1].dispose()


def signer(who: str) -> Any:
    """The acting person's private key: BATCH_ADMIN_KEY, ~/.config/batch-admin/NAME.key, or, for the
    embedded demo with the shipped roles file only, the demo key."""
    current = settings()
    demo = current.embedded and current.roles_file == DEFAULT_ROLES_FILE
    return load_private_key(who, os.environ.get(KEY_VAR) or None, demo=demo, embedded=current.embedded)


def sign_as(who: str, action: str, month: str | None, details: dict[str, Any] | None = None) -> Signed:
    """An action signed with the acting person's key; the control store verifies it."""
    return sign(signer(who), who, action, month, details)


def request_ticket(who: str, request: Any) -> Signed | None:
    """The single run ticket that carries out a finalize or unlock request (None for other kinds)."""
    job = actions.ticket_job(request)
    if job is None:
        return None
    return make_ticket(signer(who), who, job, [str(request.month)], DEFAULT_TICKET_MINUTES, request_id=request.id)
