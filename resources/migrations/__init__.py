"""Alembic migrations of the control store, applied on open and by `batch-admin migrate`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from alembic.config import Config

HERE = Path(__file__).resolve().parent
# Dagster's own PostgreSQL storage keeps `alembic_version` in the same database: ours is apart.
VERSION_TABLE = "batch_admin_alembic_version"
# The newest revision under versions/; a store at another one must be migrated.
HEAD_REVISION = "0006"


def current_revision(engine: Engine) -> str | None:
    """The store's schema revision, None for a store that was never migrated."""
    with engine.connect() as conn:  # one transaction: the table's presence and its row
        if not sa.inspect(conn).has_table(VERSION_TABLE):
            return None
        return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def alembic_config(engine: Engine) -> Config:
    # Deferred: alembic takes ~0.1 s to import, which every command opening a current store would pay.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the control store's schema to `revision`; a no-op when it is current."""
    from alembic import command  # deferred with alembic_config's import

    command.upgrade(alembic_config(engine), revision)
