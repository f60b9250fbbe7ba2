"""Alembic environment: runs on the engine the control store hands over."""

from alembic import context

# Dagster's own PostgreSQL storage keeps `alembic_version` in the same database: ours is apart.
VERSION_TABLE = "batch_admin_alembic_version"

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=None, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
