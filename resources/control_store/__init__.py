"""The control store: phases, versions, locks, parameters, adjustments, audit and alerts.

SQLAlchemy Core over SQLite (default, under the home folder) or PostgreSQL (by URL).
Every mutating action runs in one serialized write transaction that checks its
preconditions, changes state and appends a hash-chained audit entry, so concurrent
processes see exactly one winner and no audit entry is lost.

The store is kept in rooms, one module each: `tables` (the schema and its constants), `plumbing`
(engine, transactions, audit append, month row), and the rooms `alert_room`, `key_room`,
`ticket_room`, `lock_room`, `version_room`, `param_room`, `request_room` and `audit_room` (with
`passkey_store`, the passkeys' table that the keys room reads);
`store` assembles `ControlStore` from them. This package re-exports what its callers use.
"""

from __future__ import annotations

from batch.errors import ControlError
from batch.lifecycle import PHASE_FINALIZED, PHASE_OPEN, PHASE_PLANNING, PHASE_PROPOSED
from resources.control_store.audit_room import AuditVerification
from resources.control_store.lock_room import LeaseInfo, LockInfo, forget_beats, last_beat
from resources.control_store.plumbing import _entry_hash, make_engine, utcnow
from resources.control_store.store import ControlStore
from resources.control_store.tables import (
    ALERT_RETRY_FIRST_S,
    ALERT_RETRY_MAX_S,
    GENESIS_HASH,
    LEASE_HEARTBEAT_S,
    LEASE_STALE_AFTER_S,
    MAX_LOCK_TTL_HOURS,
    PG_WRITE_LOCK_KEY,
    adjustments,
    alerts,
    audit,
    audit_head,
    leases,
    locks,
    metadata,
    months,
    plans,
    requests,
    roles_accepted,
    run_snapshots,
    tickets,
    versions,
)

__all__ = [
    "ALERT_RETRY_FIRST_S", "ALERT_RETRY_MAX_S", "GENESIS_HASH", "LEASE_HEARTBEAT_S", "LEASE_STALE_AFTER_S",
    "MAX_LOCK_TTL_HOURS", "PG_WRITE_LOCK_KEY", "PHASE_FINALIZED", "PHASE_OPEN", "PHASE_PLANNING", "PHASE_PROPOSED",
    "AuditVerification", "ControlError", "ControlStore", "LeaseInfo", "LockInfo", "_entry_hash", "adjustments",
    "alerts", "audit", "audit_head", "forget_beats", "last_beat", "leases", "locks", "make_engine", "metadata", "months", "plans", "requests",
    "roles_accepted", "run_snapshots", "tickets", "versions", "utcnow",
]
