"""Identities backed by keys: signed audit entries, accepted roles, approval requests, run tickets.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit") as batch:
        # The actor's signed action (JSON with its signature); its nonce is never accepted twice.
        batch.add_column(sa.Column("signed_json", sa.Text))
        batch.add_column(sa.Column("nonce", sa.String(64)))
        batch.create_index("ix_audit_nonce", ["nonce"], unique=True)
    op.create_table(
        "roles_accepted",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_by", sa.String(64)),
        sa.Column("approved_by", sa.String(64)),
    )
    op.create_table(
        "requests",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("month", sa.String(7), index=True),
        sa.Column("version", sa.Integer),
        sa.Column("binding_json", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(64)),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("decision_text", sa.Text),
        sa.Column("run_id", sa.String(64)),
        sa.Column("done_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "tickets",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("signed_json", sa.Text, nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tickets")
    op.drop_table("requests")
    op.drop_table("roles_accepted")
    with op.batch_alter_table("audit") as batch:
        batch.drop_index("ix_audit_nonce")
        batch.drop_column("nonce")
        batch.drop_column("signed_json")
