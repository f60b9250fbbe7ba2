"""Alembic environment: runs on the engine the control store hands over."""

from alembic import context

from resources.migrations import VERSION_TABLE

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=None, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
