"""Initial control store schema.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "months",
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("params_json", sa.Text, nullable=False, server_default="{}"),
        sa.Column("final_version", sa.Integer),
        sa.Column("finalized_by", sa.String(64)),
        sa.Column("approved_by", sa.String(64)),
        sa.Column("finalized_at", TS),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "versions",
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("actor", sa.String(64)),
        sa.Column("note", sa.Text),
        sa.Column("run_id", sa.String(64)),
        sa.Column("export_path", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("params_json", sa.Text, nullable=False),
        sa.Column("metrics_json", sa.Text, nullable=False),
        sa.Column("input_fingerprint", sa.String(64)),
    )
    op.create_table(
        "plans",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("month", sa.String(7), nullable=False, index=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("actor", sa.String(64)),
        sa.Column("run_id", sa.String(64)),
        sa.Column("summary_json", sa.Text, nullable=False),
    )
    op.create_table(
        "locks",
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("admins_json", sa.Text, nullable=False),
        sa.Column("acquired_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("acquired_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_table(
        "adjustments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("month", sa.String(7), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("resource_id", sa.String(128)),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("month", sa.String(7)),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(64)),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("details_json", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("last_id", sa.Integer, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("entries", sa.Integer, nullable=False),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("month", sa.String(7), index=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("details_json", sa.Text, nullable=False),
        sa.Column("dedup_key", sa.String(256), nullable=False, index=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("deliveries_json", sa.Text, nullable=False, server_default="[]"),
    )


def downgrade() -> None:
    for name in ("alerts", "audit_head", "audit", "adjustments", "leases", "locks", "plans",
                 "versions", "months"):
        op.drop_table(name)
