"""Alert outbox: whether an alert was delivered, how often it was tried, when to try again.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True)))
    # Alerts stored before the outbox were handed to their sinks once: count them as delivered.
    op.execute("UPDATE alerts SET delivered_at = created_at, attempts = 1")


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("next_attempt_at")
        batch.drop_column("attempts")
        batch.drop_column("delivered_at")
