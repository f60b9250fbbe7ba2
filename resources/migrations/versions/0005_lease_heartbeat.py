"""Leases that know whether their holder lives: the run's last heartbeat.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Leases taken before heartbeats keep none (NULL): they are held until they expire, as before.
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("heartbeat_at")
