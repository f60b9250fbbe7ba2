"""The control store's tables (one SQLAlchemy metadata; resources/migrations creates them) and its constants."""

from __future__ import annotations

import sqlalchemy as sa

from resources.settings import LEASE_HEARTBEAT_S, LEASE_STALE_AFTER_S  # noqa: F401  (the defaults, re-exported)

GENESIS_HASH = "0" * 64
# Serializes writers on PostgreSQL, as BEGIN IMMEDIATE does on SQLite.
PG_WRITE_LOCK_KEY = 7_310_524_001

metadata = sa.MetaData()

months = sa.Table(
    "months", metadata,
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("params_json", sa.Text, nullable=False, server_default="{}"),
    sa.Column("final_version", sa.Integer),
    sa.Column("finalized_by", sa.String(64)),
    sa.Column("approved_by", sa.String(64)),
    sa.Column("finalized_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

versions = sa.Table(
    "versions", metadata,
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(64)),
    sa.Column("note", sa.Text),
    sa.Column("run_id", sa.String(64)),
    sa.Column("export_path", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("params_json", sa.Text, nullable=False),
    sa.Column("metrics_json", sa.Text, nullable=False),
    sa.Column("input_fingerprint", sa.String(64)),
)

plans = sa.Table(
    "plans", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("month", sa.String(7), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(64)),
    sa.Column("run_id", sa.String(64)),
    sa.Column("summary_json", sa.Text, nullable=False),
)

locks = sa.Table(
    "locks", metadata,
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("admins_json", sa.Text, nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

leases = sa.Table(
    "leases", metadata,
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    # The holder's last sign of life (its run worker beats every LEASE_HEARTBEAT_S); NULL for a
    # lease taken before heartbeats, which is held until it expires.
    sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
)

# A run beats its leases every lease_heartbeat_s() while its run worker lives (pipelines/executor.py);
# a lease without a beat for lease_stale_after_s() belongs to a run that died (killed, its machine
# lost), and the next run of the month takes it over. Defaults 15 s and 60 s (LEASE_HEARTBEAT_S,
# LEASE_STALE_AFTER_S); BATCH_ADMIN_LEASE_STALE_S sets them (resources/settings.py).

adjustments = sa.Table(
    "adjustments", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("month", sa.String(7), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("resource_id", sa.String(128)),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

audit = sa.Table(
    "audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("month", sa.String(7)),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(64)),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("details_json", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    # The actor's signed action, when the entry records one; its nonce is never accepted twice.
    sa.Column("signed_json", sa.Text),
    sa.Column("nonce", sa.String(64), unique=True),
)

# The chain's head, kept apart so that removing the newest entries is detected too.
audit_head = sa.Table(
    "audit_head", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("last_id", sa.Integer, nullable=False),
    sa.Column("last_hash", sa.String(64), nullable=False),
    sa.Column("entries", sa.Integer, nullable=False),
)

# A run's inputs resolved once, at its first step (parameters, pins, exclusions, actor, note).
run_snapshots = sa.Table(
    "run_snapshots", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("month", sa.String(7), nullable=False, index=True),
    sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("snapshot_json", sa.Text, nullable=False),
)

# The roles file as accepted: the first one on first use, every later one by an admin and an approver.
roles_accepted = sa.Table(
    "roles_accepted", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("checksum", sa.String(64), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("accepted_by", sa.String(64)),
    sa.Column("approved_by", sa.String(64)),
)

# Four eyes: a request filed by an admin, carried out only once another person approved it.
requests = sa.Table(
    "requests", metadata,
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

# Run tickets used: one run per ticket and month.
tickets = sa.Table(
    "tickets", metadata,
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("signed_json", sa.Text, nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
)

alerts = sa.Table(
    "alerts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("month", sa.String(7), index=True),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("details_json", sa.Text, nullable=False),
    sa.Column("dedup_key", sa.String(256), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deliveries_json", sa.Text, nullable=False, server_default="[]"),
    # The outbox: an alert stays pending until every sink took it; retried with backoff.
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
)

# A temporary lock is for a working session or a review period, not for good.
MAX_LOCK_TTL_HOURS = 744
# Backoff of undelivered alerts: 30 s, 1 min, 2 min ... at most an hour between attempts.
ALERT_RETRY_FIRST_S = 30
ALERT_RETRY_MAX_S = 3600
