"""Run snapshots: a run's parameters, pins, exclusions, actor and note, resolved once.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_snapshots",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("month", sa.String(7), nullable=False, index=True),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("snapshot_json", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("run_snapshots")
