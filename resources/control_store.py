"""The control store: phases, versions, locks, parameters, adjustments, audit and alerts.

SQLAlchemy Core over SQLite (default, under the home folder) or PostgreSQL (by URL).
Every mutating action runs in one serialized write transaction that checks its
preconditions, changes state and appends a hash-chained audit entry, so concurrent
processes see exactly one winner and no audit entry is lost.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, overload

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from batch import approvals
from batch.adjustment_log import InForce, check_change, in_force
from batch.approvals import Request
from batch.errors import ControlError
from batch.identity import CLOCK_SKEW, MAX_ACTION_AGE, MAX_TICKET_MINUTES, IdentityError, Signed, check_signature
from batch.lifecycle import PHASE_FINALIZED, PHASE_OPEN, PHASE_PLANNING, PHASE_PROPOSED
from batch.passkeys import ENROL_ACTION, PasskeyKey
from batch.roles import RoleError, Roles
from resources import passkey_store
from resources.migrations import HEAD_REVISION, current_revision, upgrade
from resources.store_trace import trace_transactions

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

# A run beats its leases every LEASE_HEARTBEAT_S while its run worker lives (pipelines/executor.py);
# a lease without a beat for LEASE_STALE_AFTER_S belongs to a run that died (killed, its machine
# lost), and the next run of the month takes it over.
LEASE_HEARTBEAT_S = 15
LEASE_STALE_AFTER_S = 60

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


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def _aware(value: datetime) -> datetime: ...
@overload
def _aware(value: None) -> None: ...
def _aware(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything here is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def _entry_hash(prev_hash: str, month: str | None, at: datetime, actor: str | None,
                action: str, details_json: str, signed_json: str | None = None) -> str:
    fields: list[Any] = [prev_hash, month, _aware(at).isoformat(), actor, action, details_json]
    if signed_json is not None:  # entries written before signatures hash as they did
        fields.append(signed_json)
    return hashlib.sha256(_dumps(fields).encode()).hexdigest()


@dataclass
class LockInfo:
    """A temporary lock on a month."""

    month: str
    holder: str
    admins: list[str]
    acquired_at: datetime
    expires_at: datetime

    def active(self, now: datetime | None = None) -> bool:
        return (now or utcnow()) < self.expires_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "holder": self.holder, "admins": self.admins,
            "acquired_at": self.acquired_at.isoformat(), "expires_at": self.expires_at.isoformat(),
            "active": self.active(),
        }


@dataclass
class LeaseInfo:
    """Which run executes a month, since when, and whether it still lives."""

    month: str
    run_id: str
    acquired_at: datetime
    expires_at: datetime
    heartbeat_at: datetime | None

    def heartbeat_age(self, now: datetime | None = None) -> float:
        """Seconds since the holder's last sign of life (its heartbeat, else taking the lease)."""
        return ((now or utcnow()) - (self.heartbeat_at or self.acquired_at)).total_seconds()

    def dead(self, now: datetime | None = None) -> bool:
        """True when the holder has not beaten for LEASE_STALE_AFTER_S, or the lease expired."""
        return self.why_dead(now) is not None

    def why_dead(self, now: datetime | None = None) -> str | None:
        """Why the holder counts as dead ("heartbeat N s ago", "expired at ..."), None while it lives."""
        now = now or utcnow()
        if self.heartbeat_at is not None and self.heartbeat_age(now) > LEASE_STALE_AFTER_S:
            return f"heartbeat {self.heartbeat_age(now):.0f} s ago"
        if now >= self.expires_at:  # a run that took too long, or a lease taken before heartbeats
            return f"lease expired at {self.expires_at.isoformat(timespec='seconds')}"
        return None

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        now = now or utcnow()
        return {
            "run_id": self.run_id, "acquired_at": self.acquired_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat() if self.heartbeat_at else None,
            "heartbeat_age_s": round(self.heartbeat_age(now), 1), "expires_at": self.expires_at.isoformat(),
            "alive": not self.dead(now), "dead_because": self.why_dead(now),
        }


def _version_item(row: Any) -> dict[str, Any]:
    item = dict(row)
    item["params"] = json.loads(item.pop("params_json"))
    item["metrics"] = json.loads(item.pop("metrics_json"))
    item["created_at"] = _aware(item["created_at"])
    return item


def _lease_of(row: Any) -> LeaseInfo:
    return LeaseInfo(month=row["month"], run_id=row["run_id"], acquired_at=_aware(row["acquired_at"]),
                     expires_at=_aware(row["expires_at"]), heartbeat_at=_aware(row["heartbeat_at"]))


@dataclass
class AuditVerification:
    """The result of re-computing the audit hash chain."""

    ok: bool
    entries: int
    problems: list[str]


def make_engine(url: str) -> Engine:
    """An engine whose write transactions are serialized, for SQLite and PostgreSQL alike."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection, _record):  # noqa: ANN001
            # Let SQLAlchemy's begin() emit BEGIN IMMEDIATE: writers queue instead of failing.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):  # noqa: ANN001
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith(("postgresql://", "postgres://")):
        # psycopg2 is the driver dagster-postgres already brings.
        url = "postgresql+psycopg2://" + url.split("://", 1)[1]
    return sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)


# The store URLs this process found at the head revision (a run's processes open the store several times).
_AT_HEAD: set[str] = set()


class ControlStore:
    """Months' lifecycle state with serialized, audited writes."""

    def __init__(self, url: str, migrate: bool | None = None, roles_file: Path | str | None = None,
                 embedded: bool = True):
        """Open the store; migrate=None migrates an embedded SQLite store on first use only.

        roles_file: the deployment's roles file (BATCH_ADMIN_ROLES). The first one is accepted on
        first use; a file that differs from the accepted roles is refused until accepted (four eyes).
        embedded: False when the settings say this is not the embedded default; PostgreSQL never is.
        Only the embedded default adopts or accepts the shipped demo public keys.
        """
        self.url = url
        self.roles_file = Path(roles_file) if roles_file else None
        self.engine = make_engine(url)
        trace_transactions(self.engine)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self.demo_keys = embedded and not self.is_postgres
        if url in _AT_HEAD:  # checked by this process already: migrations only go forward
            return
        revision = current_revision(self.engine)
        if revision == HEAD_REVISION:
            _AT_HEAD.add(url)
            return
        # The embedded SQLite store migrates on use; a PostgreSQL one only by `batch-admin migrate`.
        if migrate or (migrate is None and not self.is_postgres):
            upgrade(self.engine)
            return
        self.engine.dispose()
        raise ControlError(
            f"The control store at {sa.engine.make_url(url).render_as_string(hide_password=True)} is at "
            f"schema revision {revision or 'none'}, not {HEAD_REVISION}: run `batch-admin migrate` first."
        )

    def dispose(self) -> None:
        self.engine.dispose()

    # ---------------------------------------------------------------- plumbing
    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One serialized write transaction."""
        with self.engine.begin() as conn:
            if self.is_postgres:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_WRITE_LOCK_KEY})
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def _append_audit(self, conn: Connection, month: str | None, actor: str | None,
                      action: str, details: dict[str, Any], signed: Signed | None = None,
                      ticket_json: str | None = None) -> None:
        """Append one hash-chained entry; a signed action is kept with it (its nonce only once)."""
        head = conn.execute(sa.select(audit_head).where(audit_head.c.id == 1)).mappings().first()
        prev_hash = head["last_hash"] if head else GENESIS_HASH
        at = utcnow()
        details_json = _dumps(details)
        signed_json = _dumps(signed.to_dict()) if signed is not None else ticket_json
        digest = _entry_hash(prev_hash, month, at, actor, action, details_json, signed_json)
        new_id = conn.execute(
            audit.insert().values(month=month, at=at, actor=actor, action=action,
                                  details_json=details_json, prev_hash=prev_hash, hash=digest,
                                  signed_json=signed_json, nonce=signed.nonce if signed is not None else None)
        ).inserted_primary_key[0]  # type: ignore[index]
        if head:
            conn.execute(audit_head.update().where(audit_head.c.id == 1).values(
                last_id=new_id, last_hash=digest, entries=head["entries"] + 1))
        else:
            conn.execute(audit_head.insert().values(id=1, last_id=new_id, last_hash=digest, entries=1))

    def record(self, month: str | None, actor: str | None, action: str,
               details: dict[str, Any]) -> None:
        """Append one audit entry on its own (exports, alerts, refusals)."""
        with self.write() as conn:
            self._append_audit(conn, month, actor, action, details)

    # ---------------------------------------------------------------- identities
    def _accepted(self, conn: Connection) -> tuple[Roles, dict[str, Any]] | None:
        row = conn.execute(sa.select(roles_accepted).order_by(roles_accepted.c.id.desc()).limit(1)).mappings().first()
        if row is None:
            return None
        return Roles.parse(row["content"], row["source"]), dict(row)

    def roles(self, gate: bool = True) -> Roles:
        """The accepted roles (the first roles file is accepted on first use). gate: refuse while the
        deployment's roles file differs from them, until an admin and an approver accept it."""
        with self.read() as conn:
            found = self._accepted(conn)
        if found is None:
            if self.roles_file is None:
                raise RoleError("The control store has no accepted roles yet and no roles file was given to adopt.")
            with self.write() as conn:
                found = self._accepted(conn)
                if found is None:
                    first = self._no_demo_keys(Roles.load(self.roles_file))
                    conn.execute(roles_accepted.insert().values(checksum=first.checksum, content=first.text,
                                                                source=first.source, accepted_at=utcnow()))
                    self._append_audit(conn, None, None, "roles_adopted",
                                       {"source": first.source, "checksum": first.checksum})
                    found = self._accepted(conn)
        assert found is not None
        accepted, row = self._no_demo_keys(found[0]), found[1]
        if gate and self.roles_file is not None:
            current = Roles.load(self.roles_file)
            if current.checksum != accepted.checksum:
                raise RoleError(
                    f"The roles file {self.roles_file} differs from the roles accepted at "
                    f"{_aware(row['accepted_at']).isoformat(timespec='seconds')} (from {accepted.source}); nothing is "
                    f"done until an admin files `batch-admin accept-roles --note TEXT` and an approver approves it.")
        return accepted

    def _no_demo_keys(self, roles: Roles) -> Roles:
        if not self.demo_keys:
            roles.refuse_demo_keys()
        return roles

    def roles_file_status(self) -> dict[str, Any]:
        """The accepted roles and whether the deployment's roles file still matches them."""
        with self.read() as conn:
            found = self._accepted(conn)
        current = Roles.load(self.roles_file) if self.roles_file is not None else None
        if found is None:
            return {"accepted": None, "file": str(self.roles_file) if self.roles_file else None, "matches": None}
        accepted, row = found
        return {"accepted": {"checksum": accepted.checksum, "source": accepted.source,
                             "accepted_at": _aware(row["accepted_at"]), "accepted_by": row["accepted_by"],
                             "approved_by": row["approved_by"]},
                "file": str(self.roles_file) if self.roles_file else None,
                "matches": None if current is None else current.checksum == accepted.checksum}

    def _all_public_keys(self, conn: Connection) -> dict[str, list[str]]:
        """Every key each person had in any accepted roles (old audit entries stay verifiable)."""
        keys: dict[str, list[str]] = {}
        for content, source in conn.execute(sa.select(roles_accepted.c.content, roles_accepted.c.source)):
            for who, key in Roles.parse(content, source).keys.items():
                keys.setdefault(who, [])
                if key not in keys[who]:
                    keys[who].append(key)
        for who, texts in passkey_store.passkey_keys(conn).items():
            keys.setdefault(who, []).extend(texts)
        return keys

    def _verify(self, conn: Connection, roles: Roles, signed: Signed, action: str, month: str | None,
                fresh: bool = True) -> None:
        """The signature is the actor's, for this action and month, recent, and never used before."""
        if not isinstance(signed, Signed):
            raise IdentityError(f"An unsigned {action} is refused: every action is signed with its actor's key.")
        if signed.action != action or signed.month != month:
            raise IdentityError(f"The signature by {signed.actor} is for {signed.action} of {signed.month or 'no month'}, "
                                f"not {action} of {month or 'no month'}: refused.")
        now, at = utcnow(), signed.signed_at
        if at > now + CLOCK_SKEW or (fresh and now - at > MAX_ACTION_AGE):
            raise IdentityError(f"The {action} signed by {signed.actor} at {signed.at} is not recent (a signed action "
                                f"is valid for {int(MAX_ACTION_AGE.total_seconds() // 60)} minutes): sign it again.")
        keys = roles.public_keys(signed.actor) + passkey_store.passkey_keys(conn, signed.actor).get(signed.actor, [])
        if not keys:
            raise IdentityError(f"{signed.actor!r} has no public key in the accepted roles ({roles.source}), so "
                                f"nothing can be done in that name.")
        if not check_signature(signed, keys):
            raise IdentityError(f"The {action} in the name of {signed.actor} is not signed with {signed.actor}'s key: "
                                f"refused.")
        if fresh and conn.execute(sa.select(audit.c.id).where(audit.c.nonce == signed.nonce)).first() is not None:
            raise IdentityError(f"This {action} signed by {signed.actor} was used before (a replay): refused.")
        if fresh:
            passkey_store.advance_counter(conn, signed, now)

    @contextmanager
    def _signed(self, signed: Signed, action: str, month: str | None, gate: bool = True,
                fresh: bool = True) -> Iterator[tuple[Connection, Roles]]:
        """A write transaction that first verifies the signed action; a forged, unsigned, stale or
        replayed one is refused, audited and alerted."""
        roles = self.roles(gate=gate)
        try:
            with self.write() as conn:
                self._verify(conn, roles, signed, action, month, fresh)
                yield conn, roles
        except IdentityError as exc:
            self.refused(getattr(signed, "actor", None), action, month, str(exc))
            raise

    def refused(self, actor: str | None, action: str, month: str | None, message: str) -> None:
        """Audit and alert an action refused for its identity (forged, unsigned, stale, replayed)."""
        self.add_alert(month, "refused_action", "error", message,
                       {"claimed_actor": actor, "action": action},
                       f"refused:{hashlib.sha256(message.encode()).hexdigest()[:16]}:{utcnow():%Y%m%d%H%M}",
                       audit_actor=actor, audit_action="refused")

    def _month_row(self, conn: Connection, month: str) -> dict[str, Any]:
        row = conn.execute(sa.select(months).where(months.c.month == month)).mappings().first()
        if row is None:
            now = utcnow()
            conn.execute(months.insert().values(month=month, phase=PHASE_OPEN, params_json="{}",
                                                updated_at=now))
            row = conn.execute(sa.select(months).where(months.c.month == month)).mappings().one()
        return dict(row)

    def _set_phase(self, conn: Connection, month: str, phase: str, **values: Any) -> None:
        conn.execute(months.update().where(months.c.month == month).values(
            phase=phase, updated_at=utcnow(), **values))

    # ---------------------------------------------------------------- guards
    def final_lock_message(self, row: dict[str, Any]) -> str:
        return (
            f"Month {row['month']} is finalized (version {row['final_version']}, by "
            f"{row['finalized_by']}, approved by {row['approved_by']}, at "
            f"{_aware(row['finalized_at']).isoformat(timespec='seconds')}); nothing may overwrite it. "
            f"To change it, an admin files `batch-admin unlock {row['month']} --reason TEXT` and an approver "
            f"approves that request."
        )

    def _check_not_finalized(self, row: dict[str, Any]) -> None:
        if row["phase"] == PHASE_FINALIZED:
            raise ControlError(self.final_lock_message(row))

    def _check_lock(self, conn: Connection, month: str, actor: str | None, what: str) -> None:
        lock = self._lock(conn, month)
        if lock is None or not lock.active():
            return
        if actor is None:
            raise ControlError(
                f"Month {month} is locked by {lock.holder} until "
                f"{lock.expires_at.isoformat(timespec='seconds')}; a {what} without an actor "
                f"may not pass the lock (set the run tag batch_admin/actor or --actor)."
            )
        if actor not in lock.admins:
            raise ControlError(
                f"Month {month} is locked by {lock.holder} since "
                f"{lock.acquired_at.isoformat(timespec='seconds')} for {', '.join(lock.admins)}; "
                f"{actor} may not {what} it until the lock is released or expires at "
                f"{lock.expires_at.isoformat(timespec='seconds')}."
            )

    def guard_write(self, month: str, actor: str | None, what: str) -> None:
        """Refuse when the month is finalized or temporarily locked for others."""
        with self.read() as conn:
            row = conn.execute(sa.select(months).where(months.c.month == month)).mappings().first()
            if row is not None:
                self._check_not_finalized(dict(row))
            self._check_lock(conn, month, actor, what)

    # ---------------------------------------------------------------- reads
    def month(self, month: str) -> dict[str, Any]:
        with self.read() as conn:
            row = conn.execute(sa.select(months).where(months.c.month == month)).mappings().first()
        if row is None:
            return {"month": month, "phase": PHASE_OPEN, "params_json": "{}", "final_version": None,
                    "finalized_by": None, "approved_by": None, "finalized_at": None}
        return dict(row)

    def months(self) -> list[dict[str, Any]]:
        with self.read() as conn:
            return [dict(r) for r in conn.execute(sa.select(months).order_by(months.c.month)).mappings()]

    def params(self, month: str) -> dict[str, Any]:
        return json.loads(self.month(month)["params_json"] or "{}")

    def versions(self, month: str) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(sa.select(versions).where(versions.c.month == month)
                                .order_by(versions.c.version)).mappings().all()
        return [_version_item(r) for r in rows]

    def history(self, months_wanted: list[str]) -> dict[str, dict[str, Any]]:
        """Each of these months' versions (as `versions` gives them) and final version, in one read;
        months without a version are left out."""
        with self.read() as conn:
            rows = conn.execute(sa.select(versions).where(versions.c.month.in_(months_wanted))
                                .order_by(versions.c.month, versions.c.version)).mappings().all()
            finals = dict(conn.execute(sa.select(months.c.month, months.c.final_version)
                                       .where(months.c.month.in_(months_wanted))).all())
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            item = _version_item(r)
            out.setdefault(item["month"], {"versions": [], "final_version": finals.get(item["month"])})
            out[item["month"]]["versions"].append(item)
        return out

    def latest_plan(self, month: str) -> dict[str, Any] | None:
        with self.read() as conn:
            row = conn.execute(sa.select(plans).where(plans.c.month == month)
                               .order_by(plans.c.id.desc()).limit(1)).mappings().first()
        if row is None:
            return None
        item = dict(row)
        item["summary"] = json.loads(item.pop("summary_json"))
        return item

    def _lock(self, conn: Connection, month: str) -> LockInfo | None:
        row = conn.execute(sa.select(locks).where(locks.c.month == month)).mappings().first()
        if row is None:
            return None
        return LockInfo(month=month, holder=row["holder"], admins=json.loads(row["admins_json"]),
                        acquired_at=_aware(row["acquired_at"]), expires_at=_aware(row["expires_at"]))

    def lock_info(self, month: str) -> LockInfo | None:
        with self.read() as conn:
            return self._lock(conn, month)

    def all_locks(self) -> list[LockInfo]:
        with self.read() as conn:
            rows = conn.execute(sa.select(locks.c.month)).scalars().all()
            return [lock for m in rows if (lock := self._lock(conn, m)) is not None]

    def adjustments(self, month: str) -> list[dict[str, Any]]:
        with self.read() as conn:
            return [dict(r) for r in conn.execute(
                sa.select(adjustments).where(adjustments.c.month == month)
                .order_by(adjustments.c.id)).mappings()]

    def pins_and_exclusions(self, month: str) -> tuple[dict[str, str], set[str]]:
        """The pins and exclusions in force (batch.adjustment_log.in_force)."""
        with self.read() as conn:
            return self._pins_and_exclusions(conn, month)

    def adjustments_in_force(self, month: str) -> InForce:
        """The pins and exclusions in force, with who set each, when and why."""
        with self.read() as conn:
            return self._in_force(conn, month)

    def _in_force(self, conn: Connection, month: str) -> InForce:
        rows = conn.execute(sa.select(adjustments).where(adjustments.c.month == month)
                            .order_by(adjustments.c.id)).mappings()
        return in_force({**r, "created_at": _aware(r["created_at"])} for r in rows)

    def _pins_and_exclusions(self, conn: Connection, month: str) -> tuple[dict[str, str], set[str]]:
        state = self._in_force(conn, month)
        return state.pinned(), set(state.exclusions)

    def _rows_by_month(self, table: sa.Table, month: str | None) -> list[dict[str, Any]]:
        """Rows of an append-only table in insertion order, of one month or of all."""
        query = sa.select(table).order_by(table.c.id)
        if month is not None:
            query = query.where(table.c.month == month)
        with self.read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def audit_entries(self, month: str | None = None) -> list[dict[str, Any]]:
        rows = self._rows_by_month(audit, month)
        for r in rows:
            r["at"] = _aware(r["at"])
            r["details"] = json.loads(r["details_json"])
        return rows

    def audit_anchor(self) -> dict[str, Any]:
        """The chain's head, written into manifests and the Dagster event log as an anchor."""
        with self.read() as conn:
            head = conn.execute(sa.select(audit_head)).mappings().first()
        if head is None:
            return {"last_id": 0, "last_hash": GENESIS_HASH, "entries": 0}
        return {"last_id": head["last_id"], "last_hash": head["last_hash"], "entries": head["entries"]}

    def verify_audit(self, anchors: list[dict[str, Any]] | None = None) -> AuditVerification:
        """Re-compute the chain, check every signature against the keys of the accepted roles, the
        anchors kept outside the database (manifests, the Dagster event log) and the state tables
        against the chain; problems are listed in the order of the entries they concern."""
        with self.read() as conn:
            rows = conn.execute(sa.select(audit).order_by(audit.c.id)).mappings().all()
            head = conn.execute(sa.select(audit_head)).mappings().first()
            keys = self._all_public_keys(conn)
            month_rows = conn.execute(sa.select(months)).mappings().all()
            request_rows = [_request_of(dict(r)) for r in conn.execute(sa.select(requests)).mappings()]
        problems: list[tuple[int, str]] = []
        prev = GENESIS_HASH
        by_id = {r["id"]: r for r in rows}
        for r in rows:
            if r["prev_hash"] != prev:
                problems.append((r["id"], f"entry {r['id']} does not follow the entry before it (one was removed or changed)"))
            expected = _entry_hash(r["prev_hash"], r["month"], r["at"], r["actor"], r["action"],
                                   r["details_json"], r["signed_json"])
            if expected != r["hash"]:
                problems.append((r["id"], f"entry {r['id']} ({r['action']}) was changed after it was written"))
            if r["signed_json"] is not None:
                problem = _signature_problem(r, keys)
                if problem:
                    problems.append((r["id"], problem))
            prev = r["hash"]
        last = rows[-1]["id"] if rows else 0
        if head is None and rows:
            problems.append((last, "the chain head is missing"))
        if head is not None:
            if head["entries"] != len(rows):
                problems.append((last, f"the chain holds {len(rows)} entries but {head['entries']} were written"))
            if not rows or head["last_hash"] != rows[-1]["hash"]:
                problems.append((last, "the newest entries were removed or changed"))
        for anchor in anchors or []:
            entry = by_id.get(int(anchor.get("last_id") or 0))
            where = anchor.get("where", "an anchor")
            if int(anchor.get("entries") or 0) > len(rows):
                problems.append((int(anchor.get("last_id") or 0),
                                 f"{where} anchors {anchor.get('entries')} entries but the log holds {len(rows)} "
                                 f"(entries were removed or the log was wiped)"))
            elif anchor.get("last_id") and entry is None:
                problems.append((int(anchor["last_id"]), f"entry {anchor['last_id']} anchored by {where} is missing"))
            elif entry is not None and entry["hash"] != anchor.get("last_hash"):
                problems.append((entry["id"], f"entry {entry['id']} differs from the hash anchored by {where} "
                                              f"(the log was rewritten)"))
        problems.extend(_state_problems(rows, month_rows, request_rows))
        ordered = [text for _, text in sorted(problems, key=lambda p: p[0])]
        return AuditVerification(ok=not ordered, entries=len(rows), problems=ordered)

    def alerts(self, month: str | None = None, pending: bool = False) -> list[dict[str, Any]]:
        """Alerts in the order raised (of one month, or all); pending: only those not yet delivered."""
        rows = self._rows_by_month(alerts, month)
        if pending:
            rows = [r for r in rows if r["delivered_at"] is None]
        for r in rows:
            r["details"] = json.loads(r.pop("details_json"))
            r["deliveries"] = json.loads(r.pop("deliveries_json"))
            for key in ("created_at", "delivered_at", "next_attempt_at"):
                r[key] = _aware(r[key])
        return rows

    def pending_alert(self, dedup_key: str) -> int | None:
        """The id of the undelivered alert with this key, if any."""
        with self.read() as conn:
            return conn.execute(sa.select(alerts.c.id).where(sa.and_(
                alerts.c.dedup_key == dedup_key, alerts.c.delivered_at.is_(None))).limit(1)).scalar()

    def due_alerts(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Undelivered alerts whose next attempt is due."""
        now = now or utcnow()
        return [a for a in self.alerts(pending=True)
                if a["next_attempt_at"] is None or a["next_attempt_at"] <= now]

    # ---------------------------------------------------------------- writes
    def set_params(self, signed: Signed) -> dict[str, Any]:
        """Change a month's parameters (details: changes; a value None unsets the key: its default
        counts again), signed by an admin."""
        month, changes = str(signed.month), dict(signed.details.get("changes") or {})
        with self._signed(signed, "params", month) as (conn, roles):
            actor = roles.require_admin(signed.actor, f"change parameters of {month}")
            row = self._month_row(conn, month)
            self._check_not_finalized(row)
            self._check_lock(conn, month, actor, "change parameters of")
            current = json.loads(row["params_json"] or "{}")
            before = {k: current.get(k) for k in changes}
            current.update({k: v for k, v in changes.items() if v is not None})
            for key in (k for k, v in changes.items() if v is None):
                current.pop(key, None)
            conn.execute(months.update().where(months.c.month == month).values(
                params_json=_dumps(current), updated_at=utcnow()))
            self._append_audit(conn, month, actor, "params", {"changes": changes, "before": before}, signed)
        return current

    def add_adjustment(self, signed: Signed) -> None:
        """Pin, exclude, unpin, include or clear (details: kind, request_id, resource_id, note), signed by an
        admin; batch.adjustment_log says what may be added."""
        month, d = str(signed.month), signed.details
        kind, resource_id, note = d.get("kind"), d.get("resource_id"), d.get("note")
        with self._signed(signed, "adjust", month) as (conn, roles):
            actor = roles.require_admin(signed.actor, f"adjust {month}")
            row = self._month_row(conn, month)
            self._check_not_finalized(row)
            self._check_lock(conn, month, actor, "adjust")
            request_id = check_change(self._in_force(conn, month), str(kind), d.get("request_id"), resource_id, note)
            conn.execute(adjustments.insert().values(
                month=month, kind=kind, request_id=request_id, resource_id=resource_id,
                note=note, actor=actor, created_at=utcnow()))
            self._append_audit(conn, month, actor, "adjust",
                               {"kind": kind, "request_id": d.get("request_id"),
                                "resource_id": resource_id, "note": note}, signed)

    def take_lock(self, signed: Signed) -> LockInfo:
        """The temporary lock (details: admins, ttl_hours), signed by an admin."""
        month = str(signed.month)
        ttl_hours = float(signed.details.get("ttl_hours") or 0)
        # NaN compares false both ways: the range check is written so that it refuses NaN too.
        if not 0 < ttl_hours <= MAX_LOCK_TTL_HOURS:
            raise ControlError(f"The lock's time to live must be more than 0 and at most {MAX_LOCK_TTL_HOURS} hours "
                               f"(31 days), not {ttl_hours}.")
        with self._signed(signed, "lock", month) as (conn, roles):
            actor = roles.require_admin(signed.actor, f"lock {month}")
            named = signed.details.get("admins") or []
            admins = sorted(set(map(str, named)) | {actor})
            for name in admins:
                roles.require_admin(name, f"be designated on the lock of {month}")
            row = self._month_row(conn, month)
            self._check_not_finalized(row)
            existing = self._lock(conn, month)
            if existing is not None and existing.active() and existing.holder != actor:
                raise ControlError(
                    f"Month {month} is already locked by {existing.holder} since "
                    f"{existing.acquired_at.isoformat(timespec='seconds')} (expires "
                    f"{existing.expires_at.isoformat(timespec='seconds')})."
                )
            now = utcnow()
            info = LockInfo(month, actor, admins, now, now + timedelta(hours=ttl_hours))
            conn.execute(locks.delete().where(locks.c.month == month))
            conn.execute(locks.insert().values(month=month, holder=actor, admins_json=_dumps(admins),
                                               acquired_at=now, expires_at=info.expires_at))
            self._append_audit(conn, month, actor, "lock",
                               {"admins": named, "designated": admins, "ttl_hours": signed.details.get("ttl_hours"),
                                "expires_at": info.expires_at.isoformat()}, signed)
        return info

    def release_lock(self, signed: Signed) -> None:
        month = str(signed.month)
        with self._signed(signed, "release", month) as (conn, roles):
            actor = roles.require_admin(signed.actor, f"release the lock of {month}")
            existing = self._lock(conn, month)
            if existing is None:
                raise ControlError(f"Month {month} holds no temporary lock to release.")
            if existing.active() and actor != existing.holder:
                raise ControlError(
                    f"Only {existing.holder}, who holds the lock on {month}, may release it "
                    f"before it expires at {existing.expires_at.isoformat(timespec='seconds')}."
                )
            conn.execute(locks.delete().where(locks.c.month == month))
            self._append_audit(conn, month, actor, "release", {"holder": existing.holder}, signed)

    def register_passkey(self, token: Signed, key: PasskeyKey) -> None:
        """Register a passkey for the signer of an enrolment token (signed by their key, fresh, used once); the
        audit entry keeps the token and the credential's id and public key."""
        with self._signed(token, ENROL_ACTION, None) as (conn, _roles):
            passkey_store.insert(conn, token, key, utcnow())
            self._append_audit(conn, None, token.actor, ENROL_ACTION, passkey_store.enrolment_details(token, key), token)

    def passkeys(self) -> list[dict[str, Any]]:
        """Every registered passkey (resources.passkey_store.listed)."""
        with self.read() as conn:
            return passkey_store.listed(conn)

    def record_signed(self, signed: Signed) -> None:
        """Audit a signed action that changes no state (an export) by anyone in the roles."""
        with self._signed(signed, signed.action, signed.month) as (conn, roles):
            roles.require_known(signed.actor, f"{signed.action} {signed.month or ''}".strip())
            self._append_audit(conn, signed.month, signed.actor, signed.action, dict(signed.details), signed)

    # ---------------------------------------------------------------- run tickets
    def claim_ticket(self, ticket_text: str | None, job: str, month: str, run_id: str,
                     system_allowed: bool, reexecution_of: str | None = None, request_id: str | None = None) -> str:
        """The identity a run acts as: its run ticket's signer (one run per ticket and month; a
        re-execution takes the ticket over from `reexecution_of`, its parent run as the instance knows
        it, only while that run holds it), or, for a planning run without a ticket, the declared system
        identity. With `request_id`: the ticket that request's approval issued, and no other."""
        if not ticket_text:
            roles = self.roles()
            if system_allowed and roles.system:
                return sorted(roles.system)[0]
            message = (f"Run {run_id} of {job} for {month} carries no run ticket and is refused before writing "
                       f"anything: make one with `batch-admin ticket {month} --job {job} --actor YOU` and add it "
                       f"as the run's tag batch_admin/ticket, or start the run with batch-admin.")
            if request_id is not None:
                message = (f"Run {run_id} of {job} carries no run ticket and is refused: request {request_id} is "
                           f"carried out only with the ticket its approval issued (`batch-admin repair {month}` "
                           f"issues a new one to finish a request left half done).")
            self.refused(None, "run", month, message)
            raise IdentityError(message)
        try:
            signed = Signed.decode(ticket_text)
        except IdentityError as exc:
            self.refused(None, "run", month, str(exc))
            raise
        with self._signed(signed, "ticket", None, fresh=False) as (conn, roles):
            d = signed.details
            try:
                expires = datetime.fromisoformat(str(d.get("expires_at")))
            except ValueError:
                raise IdentityError("The run ticket has no valid expiry.") from None
            if expires - signed.signed_at > timedelta(minutes=MAX_TICKET_MINUTES):
                raise IdentityError(f"The run ticket is valid for longer than {MAX_TICKET_MINUTES} minutes: refused.")
            if utcnow() > expires:
                raise ControlError(f"The run ticket of {signed.actor} expired at {expires.isoformat(timespec='seconds')}; "
                                   f"make a new one with `batch-admin ticket {month} --job {job}`.")
            if d.get("job") != job:
                raise ControlError(f"The run ticket of {signed.actor} is for {d.get('job')}, not {job}.")
            if month not in (d.get("months") or []):
                raise ControlError(f"The run ticket of {signed.actor} is for {', '.join(d.get('months') or [])}, "
                                   f"not {month}.")
            if request_id is None and d.get("request_id") is None:
                roles.require_admin(signed.actor, f"run {job} for {month}")
            elif d.get("request_id") != request_id or _issued_ticket(conn, str(request_id), month) != signed.nonce:
                raise ControlError(f"The run ticket of {signed.actor} was not issued by the approval of request "
                                   f"{request_id}: a finalize or unlock run carries out its request with the ticket "
                                   f"that request's approval issued, and no other.")
            used = conn.execute(sa.select(tickets.c.run_id).where(sa.and_(
                tickets.c.nonce == signed.nonce, tickets.c.month == month))).scalar()
            if used is None:
                conn.execute(tickets.insert().values(nonce=signed.nonce, month=month, run_id=run_id,
                                                     actor=signed.actor, signed_json=_dumps(signed.to_dict()),
                                                     used_at=utcnow()))
            elif used != run_id:
                # A re-execution takes the ticket over from the run holding it: one re-execution per run.
                taken = used == reexecution_of and conn.execute(tickets.update().where(sa.and_(
                    tickets.c.nonce == signed.nonce, tickets.c.month == month, tickets.c.run_id == used)).values(
                    run_id=run_id, used_at=utcnow())).rowcount == 1
                if not taken:
                    raise ControlError(
                        f"The run ticket of {signed.actor} for {month} was used by run {used}; a ticket is valid for "
                        f"one run (and a re-execution of that run once it failed or was canceled): make a new one "
                        f"with `batch-admin ticket {month} --job {job}`.")
        return signed.actor

    def _ticket_json(self, conn: Connection, month: str, run_id: str | None) -> str | None:
        if run_id is None:
            return None
        return conn.execute(sa.select(tickets.c.signed_json).where(sa.and_(
            tickets.c.month == month, tickets.c.run_id == run_id))).scalar()

    # ---------------------------------------------------------------- requests (four eyes)
    def _request(self, conn: Connection, request_id: str) -> Request:
        row = conn.execute(sa.select(requests).where(requests.c.id == str(request_id))).mappings().first()
        if row is None:
            raise ControlError(f"There is no request {request_id!r}; `batch-admin requests` lists them.")
        return _request_of(dict(row))

    def request(self, request_id: str) -> Request:
        with self.read() as conn:
            return self._request(conn, request_id)

    def requests(self, month: str | None = None) -> list[Request]:
        query = sa.select(requests).order_by(requests.c.requested_at)
        if month is not None:
            query = query.where(requests.c.month == month)
        with self.read() as conn:
            return [_request_of(dict(r)) for r in conn.execute(query).mappings()]

    def file_request(self, signed: Signed) -> Request:
        """File a finalize, unlock or roles request (details: kind, text, binding), signed by an admin."""
        kind = signed.details.get("kind")
        with self._signed(signed, approvals.REQUEST_ACTION, signed.month, gate=kind != approvals.KIND_ROLES) \
                as (conn, roles):
            kind, text = approvals.check_filing(roles, signed)
            binding = dict(signed.details.get("binding") or {})
            month, version = signed.month, None
            if kind == approvals.KIND_ROLES:
                if self.roles_file is None:
                    raise ControlError("No roles file is configured to accept.")
                proposed = self._no_demo_keys(Roles.load(self.roles_file))
                expected = {"checksum": proposed.checksum, "source": proposed.source}
                if binding != expected:
                    raise ControlError(f"The roles file {self.roles_file} changed while the request was made; "
                                       f"run the command again.")
                if proposed.checksum == roles.checksum:
                    raise ControlError(f"The roles file {self.roles_file} is the accepted one; nothing to accept.")
                binding["content"] = proposed.text
            else:
                if month is None:
                    raise ControlError(f"A {kind} request names a month.")
                row = self._month_row(conn, month)
                if kind == approvals.KIND_FINALIZE:
                    self._check_not_finalized(row)
                    self._check_lock(conn, month, signed.actor, "finalize")
                    version = int(binding.get("version") or 0)
                    self._check_binding(conn, month, binding)
                else:
                    if row["phase"] != PHASE_FINALIZED:
                        raise ControlError(f"Month {month} is not finalized (phase {row['phase']}); there is nothing "
                                           f"to unlock.")
                    if binding != {"final_version": row["final_version"]}:
                        raise ControlError(f"Month {month}'s final version is {row['final_version']}, not "
                                           f"{binding.get('final_version')}; run the command again.")
                    version = row["final_version"]
            taken = conn.execute(sa.select(requests.c.id).where(sa.and_(
                requests.c.kind == kind, requests.c.month.is_(None) if month is None else requests.c.month == month,
                requests.c.status.in_(approvals.OPEN_STATUSES), requests.c.expires_at > utcnow()))).scalar()
            if taken is not None:
                raise ControlError(f"Request {taken} to {kind}{' ' + month if month else ''} is still open; an approver "
                                   f"decides it (`batch-admin approve|reject {taken}`) before another is filed.")
            now = utcnow()
            new_id = secrets.token_hex(4)
            conn.execute(requests.insert().values(
                id=new_id, kind=kind, month=month, version=version, binding_json=_dumps(binding), text=text,
                requested_by=signed.actor, requested_at=now, expires_at=now + approvals.REQUEST_TTL,
                status=approvals.PENDING))
            self._append_audit(conn, month, signed.actor, approvals.REQUEST_ACTION,
                               {"request_id": new_id, "kind": kind, "version": version, "text": text,
                                "binding": approvals.binding_public(binding)}, signed)
            return self._request(conn, new_id)

    def _check_binding(self, conn: Connection, month: str, binding: dict[str, Any]) -> None:
        """A finalize binding still holds: its version exists with its inputs and no run came after."""
        version = int(binding.get("version") or 0)
        row = conn.execute(sa.select(versions.c.input_fingerprint).where(sa.and_(
            versions.c.month == month, versions.c.version == version))).first()
        if row is None:
            raise ControlError(f"Month {month} has no version {version} to finalize.")
        if row[0] != binding.get("input_fingerprint"):
            raise ControlError(f"Version {version} of {month} was made from other inputs than the request names.")
        count = conn.execute(sa.select(sa.func.count()).select_from(versions).where(versions.c.month == month)).scalar()
        if count != binding.get("versions_seen"):
            raise ControlError(f"Month {month} has had a new run since (now {count} versions); a request approves "
                               f"what its filer saw, so file a new one.")

    def check_finalize_binding(self, request: Request) -> None:
        """Refuse when a finalize request's version, inputs or run count changed since it was filed."""
        with self.read() as conn:
            self._check_binding(conn, str(request.month), request.binding)

    def decide_request(self, signed: Signed) -> Request:
        """Approve or reject a request (details: request_id, binding | reason), signed by an approver who
        is not its filer. An approved roles change takes effect at once; an approved finalize or unlock
        is carried out by its job. One decision per request, whoever comes first."""
        request_id = str(signed.details.get("request_id") or "")
        if signed.action not in (approvals.APPROVE_ACTION, approvals.REJECT_ACTION):
            raise ControlError(f"A decision is approve or reject, not {signed.action}.")
        with self.read() as conn:
            first = self._request(conn, request_id)
        with self._signed(signed, signed.action, first.month, gate=first.kind != approvals.KIND_ROLES) \
                as (conn, roles):
            req = self._request(conn, request_id)
            now = utcnow()
            approvals.check_decision(roles, req, signed, now)
            if signed.action == approvals.REJECT_ACTION:
                reason = str(signed.details.get("reason") or "").strip()
                if not reason:
                    raise ControlError("A rejection needs a non-empty --reason.")
                status, text = approvals.REJECTED, reason
            else:
                status, text = approvals.APPROVED, None
                if req.kind == approvals.KIND_FINALIZE and req.month is not None:
                    row = self._month_row(conn, req.month)
                    self._check_not_finalized(row)
                    self._check_binding(conn, req.month, req.binding)
                    held = conn.execute(sa.select(leases).where(leases.c.month == req.month)).mappings().first()
                    if held is not None and not _lease_of(held).dead():
                        raise ControlError(f"Run {held['run_id']} of {req.month} is executing; approve after it ends "
                                           f"(a new version would make this request stale).")
                if req.kind == approvals.KIND_UNLOCK and req.month is not None:
                    row = self._month_row(conn, req.month)
                    if row["phase"] != PHASE_FINALIZED or row["final_version"] != req.binding.get("final_version"):
                        raise ControlError(f"Month {req.month} is no longer finalized at version "
                                           f"{req.binding.get('final_version')}; the request is overtaken.")
                if req.kind == approvals.KIND_ROLES:
                    status = approvals.DONE
            changed = conn.execute(requests.update().where(sa.and_(
                requests.c.id == req.id, requests.c.status == approvals.PENDING)).values(
                status=status, decided_by=signed.actor, decided_at=now, decision_text=text,
                done_at=now if status == approvals.DONE else None)).rowcount
            if changed != 1:
                raise ControlError(f"The {req.describe()} was decided by someone else meanwhile.")
            if req.kind == approvals.KIND_ROLES and status == approvals.DONE:
                proposed = self._no_demo_keys(Roles.parse(req.binding["content"], str(req.binding.get("source"))))
                conn.execute(roles_accepted.insert().values(
                    checksum=proposed.checksum, content=proposed.text, source=proposed.source, accepted_at=now,
                    accepted_by=req.requested_by, approved_by=signed.actor))
            self._append_audit(conn, req.month, signed.actor, signed.action,
                               {"request_id": req.id, "kind": req.kind, "version": req.version,
                                "requested_by": req.requested_by, "reason": signed.details.get("reason"),
                                "binding": req.binding_public(),
                                "ticket_nonce": signed.details.get("ticket_nonce")}, signed)
            if status == approvals.REJECTED:
                self._add_alert(conn, req.month, "request_rejected", "warning",
                                f"{signed.actor} rejected {req.describe()}: {text}",
                                {"request_id": req.id, "kind": req.kind, "rejected_by": signed.actor},
                                f"request_rejected:{req.id}")
            return self._request(conn, req.id)

    def approved_request(self, request_id: str, kind: str, month: str) -> Request:
        """The approved request a finalize or unlock job carries out; refused, before anything is written,
        when it is not approved, carried out already, to do something else, or overtaken."""
        with self.read() as conn:
            req = self._request(conn, request_id)
            overtaken = self._overtaken(conn, req)
        if req.kind != kind or req.month != month:
            raise ControlError(f"Request {request_id} is to {req.kind} {req.month}, not to {kind} {month}.")
        if req.status != approvals.APPROVED:
            status = req.effective_status(utcnow())
            if status == approvals.DONE:
                raise ControlError(f"The {req.describe()} was carried out already by run {req.run_id}; a request is "
                                   f"carried out once.")
            hint = f" it needs an approver's `batch-admin approve {req.id}`" if status == approvals.PENDING else ""
            raise ControlError(f"The {req.describe()} is {status}, not approved;{hint or ' it cannot be carried out.'}")
        if overtaken is not None:
            self.mark_stale(req.id, overtaken)
            raise ControlError(f"The {req.describe()} is overtaken: {overtaken}.")
        return req

    def _overtaken(self, conn: Connection, req: Request) -> str | None:
        """Why a request is no longer its month's current one: a later finalize or unlock was carried out."""
        later = conn.execute(sa.select(requests.c.id, requests.c.kind).where(sa.and_(
            requests.c.month == req.month, requests.c.id != req.id, requests.c.status == approvals.DONE,
            requests.c.kind.in_((approvals.KIND_FINALIZE, approvals.KIND_UNLOCK)),
            requests.c.done_at > (req.decided_at or req.requested_at)))).first()
        return None if later is None else f"request {later.id} ({later.kind}) was carried out after it was approved"

    def issue_ticket(self, signed: Signed) -> None:
        """A new run ticket (details: request_id, ticket_nonce) for an approved request whose run did not
        finish, signed by an approver (`batch-admin repair`); the earlier ticket no longer serves."""
        with self._signed(signed, approvals.TICKET_ISSUED_ACTION, signed.month) as (conn, roles):
            req = self._request(conn, str(signed.details.get("request_id")))
            if signed.actor not in roles.approvers:
                raise RoleError(f"{signed.actor} does not hold the approver role in {roles.source} and may not issue "
                                f"a run ticket for {req.describe()}.")
            if req.status != approvals.APPROVED or req.month != signed.month:
                raise ControlError(f"The {req.describe()} is {req.status}: only an approved request of "
                                   f"{signed.month} gets a new run ticket.")
            self._append_audit(conn, req.month, signed.actor, signed.action, dict(signed.details), signed)

    def mark_stale(self, request_id: str, why: str) -> None:
        """An approved request that can no longer be carried out as approved."""
        with self.write() as conn:
            req = self._request(conn, request_id)
            if req.status != approvals.APPROVED:
                return
            conn.execute(requests.update().where(requests.c.id == req.id).values(
                status=approvals.STALE, decision_text=why))
            self._append_audit(conn, req.month, None, "request_stale", {"request_id": req.id, "why": why})
            self._add_alert(conn, req.month, "request_stale", "warning", f"The {req.describe()} is stale: {why}",
                            {"request_id": req.id}, f"request_stale:{req.id}")

    def expire_requests(self, now: datetime | None = None) -> list[Request]:
        """Mark pending requests past their expiry as expired, with an alert each; returns them."""
        now = now or utcnow()
        expired = []
        with self.write() as conn:
            for row in conn.execute(sa.select(requests).where(sa.and_(
                    requests.c.status == approvals.PENDING, requests.c.expires_at <= now))).mappings().all():
                req = _request_of(dict(row))
                conn.execute(requests.update().where(requests.c.id == req.id).values(status=approvals.EXPIRED))
                self._append_audit(conn, req.month, None, "request_expired", {"request_id": req.id})
                self._add_alert(conn, req.month, "request_expired", "warning",
                                f"The {req.describe()} expired at {req.expires_at.isoformat(timespec='minutes')} "
                                f"without a decision.", {"request_id": req.id}, f"request_expired:{req.id}")
                expired.append(req)
        return expired

    def acquire_lease(self, month: str, run_id: str, ttl_hours: float = 6.0,
                      finished_holder: str | None = None) -> LeaseInfo | None:
        """One execution per month: refuse while another live run holds the month.

        The month is taken over from a holder the caller saw finish (`finished_holder`), or from a
        dead one (no heartbeat for LEASE_STALE_AFTER_S, or the lease expired); the dead holder's
        lease is returned, so that the caller marks that run failed. Taking over is a compare and
        swap on the holder and its last heartbeat as read here: of two runs that both saw the same
        holder finish or die, one takes the month and the other is refused."""
        with self.write() as conn:
            row = conn.execute(sa.select(leases).where(leases.c.month == month)).mappings().first()
            now = utcnow()
            if row is None:
                conn.execute(leases.insert().values(month=month, run_id=run_id, acquired_at=now, heartbeat_at=now,
                                                    expires_at=now + timedelta(hours=ttl_hours)))
                return None
            held = _lease_of(row)
            if held.run_id == run_id:
                return None
            if held.run_id != finished_holder and not held.dead(now):
                raise ControlError(
                    f"Month {month} is being executed by run {held.run_id} since "
                    f"{held.acquired_at.isoformat(timespec='seconds')} (last heartbeat "
                    f"{held.heartbeat_age(now):.0f} s ago); two runs for the same month never execute at the "
                    f"same time. If that run died, the next run takes the month over once its heartbeat is "
                    f"{LEASE_STALE_AFTER_S} s old."
                )
            seen_beat = (leases.c.heartbeat_at.is_(None) if row["heartbeat_at"] is None
                         else leases.c.heartbeat_at == row["heartbeat_at"])
            swapped = conn.execute(leases.update().where(sa.and_(
                leases.c.month == month, leases.c.run_id == held.run_id, seen_beat)).values(
                run_id=run_id, acquired_at=now, heartbeat_at=now, expires_at=now + timedelta(hours=ttl_hours)))
            if swapped.rowcount != 1:
                raise ControlError(f"Month {month} was taken by another run while run {run_id} took it over from "
                                   f"run {held.run_id}; two runs for the same month never execute at the same time.")
            return None if held.run_id == finished_holder else held

    def lease_holder(self, month: str) -> str | None:
        with self.read() as conn:
            return conn.execute(sa.select(leases.c.run_id).where(leases.c.month == month)).scalar()

    def lease(self, month: str) -> LeaseInfo | None:
        """The month's lease: its holder, since when, its last heartbeat (`.dead()` says whether it lives)."""
        with self.read() as conn:
            row = conn.execute(sa.select(leases).where(leases.c.month == month)).mappings().first()
        return _lease_of(row) if row is not None else None

    def beat_leases(self, run_id: str) -> int:
        """The run's sign of life: refresh the heartbeat of every lease it holds; how many it holds."""
        with self.write() as conn:
            return conn.execute(leases.update().where(leases.c.run_id == run_id).values(heartbeat_at=utcnow())).rowcount

    def release_lease(self, month: str, run_id: str) -> None:
        with self.write() as conn:
            conn.execute(leases.delete().where(sa.and_(leases.c.month == month,
                                                       leases.c.run_id == run_id)))

    def record_plan(self, month: str, actor: str | None, run_id: str | None,
                    summary: dict[str, Any]) -> None:
        with self.write() as conn:
            row = self._month_row(conn, month)
            self._check_not_finalized(row)
            conn.execute(plans.insert().values(month=month, created_at=utcnow(), actor=actor,
                                               run_id=run_id, summary_json=_dumps(summary)))
            if row["phase"] == PHASE_OPEN:
                self._set_phase(conn, month, PHASE_PLANNING)
            self._append_audit(conn, month, actor, "plan", {"run_id": run_id, **summary},
                               ticket_json=self._ticket_json(conn, month, run_id))

    def run_snapshot(self, month: str, run_id: str, actor: str | None, note: str | None) -> dict[str, Any]:
        """The run's inputs: recorded by its first call, read back unchanged by every later one."""
        with self.write() as conn:
            stored = conn.execute(sa.select(run_snapshots.c.snapshot_json)
                                  .where(run_snapshots.c.run_id == run_id)).scalar()
            if stored is not None:
                return json.loads(stored)
            row = self._month_row(conn, month)
            pins, excluded = self._pins_and_exclusions(conn, month)
            now = utcnow()
            snapshot = {"month": month, "run_id": run_id, "actor": actor, "note": note,
                        "params": json.loads(row["params_json"] or "{}"), "pins": pins,
                        "exclusions": sorted(excluded), "taken_at": now.isoformat()}
            conn.execute(run_snapshots.insert().values(run_id=run_id, month=month, taken_at=now,
                                                       snapshot_json=_dumps(snapshot)))
            return snapshot

    def resume_run(self, month: str, run_id: str, what: str) -> dict[str, Any] | None:
        """A later step of an admitted run, in one read: the run's snapshot when the run holds the
        month's lease and took its snapshot (its first step was admitted: ticket, roles, lock, lease),
        after checking what can change during a run (the final lock, the temporary lock); None when
        the run was not admitted yet (its first step goes through the whole admission)."""
        with self.read() as conn:
            holder = conn.execute(sa.select(leases.c.run_id).where(leases.c.month == month)).scalar()
            stored = conn.execute(sa.select(run_snapshots.c.snapshot_json)
                                  .where(run_snapshots.c.run_id == run_id)).scalar()
            if holder != run_id or stored is None:
                return None
            snapshot = json.loads(stored)
            row = conn.execute(sa.select(months).where(months.c.month == month)).mappings().first()
            if row is not None:
                self._check_not_finalized(dict(row))
            self._check_lock(conn, month, snapshot.get("actor"), what)
        return snapshot

    def run_snapshots(self, month: str) -> list[dict[str, Any]]:
        """The snapshots of a month's runs, oldest first."""
        with self.read() as conn:
            rows = conn.execute(sa.select(run_snapshots.c.snapshot_json).where(run_snapshots.c.month == month)
                                .order_by(run_snapshots.c.taken_at)).scalars().all()
        return [json.loads(row) for row in rows]

    def check_can_run(self, month: str, actor: str | None, note: str | None) -> None:
        """Refuse a run that would be version 2 or later without a change note."""
        self.guard_write(month, actor, "run")
        if self.versions(month) and not (note and note.strip()):
            raise ControlError(
                f"Month {month} already has version {len(self.versions(month))}; from version 2 on "
                f"a run needs a change note (--note TEXT, or the run tag batch_admin/note)."
            )

    def record_version(self, month: str, version: int, actor: str | None, note: str | None,
                       run_id: str | None, export_path: str, params: dict[str, Any],
                       metrics: dict[str, Any], input_fingerprint: str | None) -> None:
        with self.write() as conn:
            row = self._month_row(conn, month)
            self._check_not_finalized(row)
            conn.execute(versions.insert().values(
                month=month, version=version, created_at=utcnow(), actor=actor, note=note,
                run_id=run_id, export_path=export_path, status="proposed",
                params_json=_dumps(params), metrics_json=_dumps(metrics),
                input_fingerprint=input_fingerprint))
            self._set_phase(conn, month, PHASE_PROPOSED)
            self._append_audit(conn, month, actor, "run",
                               {"version": version, "run_id": run_id, "note": note,
                                "export_path": export_path}, ticket_json=self._ticket_json(conn, month, run_id))

    def complete_finalize(self, request_id: str, run_id: str) -> dict[str, Any]:
        """Carry out an approved finalize request: the final lock, in one transaction, once the
        official export is in place and verified (the caller's part). Once per request."""
        with self.write() as conn:
            req = self._request(conn, request_id)
            month, version = str(req.month), int(req.version or 0)
            if req.status != approvals.APPROVED or req.kind != approvals.KIND_FINALIZE:
                raise ControlError(f"The {req.describe()} is {req.status}, not an approved finalization.")
            if (overtaken := self._overtaken(conn, req)) is not None:
                raise ControlError(f"The {req.describe()} is overtaken: {overtaken}.")
            row = self._month_row(conn, month)
            self._check_not_finalized(row)
            self._check_binding(conn, month, req.binding)
            now = utcnow()
            conn.execute(months.update().where(sa.and_(
                months.c.month == month, months.c.phase != PHASE_FINALIZED)).values(
                phase=PHASE_FINALIZED, final_version=version, finalized_by=req.requested_by,
                approved_by=req.decided_by, finalized_at=now, updated_at=now))
            conn.execute(versions.update().where(sa.and_(
                versions.c.month == month, versions.c.version == version)).values(status="final"))
            conn.execute(locks.delete().where(locks.c.month == month))
            conn.execute(requests.update().where(requests.c.id == req.id).values(
                status=approvals.DONE, run_id=run_id, done_at=now))
            self._append_audit(conn, month, req.decided_by, "finalize",
                               {"version": version, "finalized_by": req.requested_by, "approver": req.decided_by,
                                "request_id": req.id, "run_id": run_id})
            return dict(self._month_row(conn, month))

    def complete_unlock(self, request_id: str, run_id: str) -> Request:
        """Carry out an approved unlock request: the month back to proposed. Once per request."""
        with self.write() as conn:
            req = self._request(conn, request_id)
            month = str(req.month)
            if req.status != approvals.APPROVED or req.kind != approvals.KIND_UNLOCK:
                raise ControlError(f"The {req.describe()} is {req.status}, not an approved unlock.")
            if (overtaken := self._overtaken(conn, req)) is not None:
                raise ControlError(f"The {req.describe()} is overtaken: {overtaken}.")
            row = self._month_row(conn, month)
            if row["phase"] != PHASE_FINALIZED or row["final_version"] != req.binding.get("final_version"):
                raise ControlError(f"Month {month} is no longer finalized at version "
                                   f"{req.binding.get('final_version')}; the request is overtaken.")
            conn.execute(versions.update().where(sa.and_(
                versions.c.month == month, versions.c.version == row["final_version"])).values(
                status="proposed"))
            self._set_phase(conn, month, PHASE_PROPOSED, final_version=None, finalized_by=None,
                            approved_by=None, finalized_at=None)
            now = utcnow()
            conn.execute(requests.update().where(requests.c.id == req.id).values(
                status=approvals.DONE, run_id=run_id, done_at=now))
            self._append_audit(conn, month, req.decided_by, "unlock",
                               {"requested_by": req.requested_by, "approver": req.decided_by, "reason": req.text,
                                "was_final_version": row["final_version"], "request_id": req.id, "run_id": run_id})
            return self._request(conn, req.id)

    def add_alert(self, month: str | None, rule: str, severity: str, message: str,
                  details: dict[str, Any], dedup_key: str, audit_actor: str | None = None,
                  audit_action: str = "alert") -> int | None:
        """Store an alert unless one with the same dedup key exists; returns its id."""
        with self.write() as conn:
            return self._add_alert(conn, month, rule, severity, message, details, dedup_key, audit_actor,
                                   audit_action)

    def _add_alert(self, conn: Connection, month: str | None, rule: str, severity: str, message: str,
                   details: dict[str, Any], dedup_key: str, audit_actor: str | None = None,
                   audit_action: str = "alert") -> int | None:
        seen = conn.execute(sa.select(alerts.c.id).where(alerts.c.dedup_key == dedup_key)).first()
        if seen is not None:
            return None
        new_id = conn.execute(alerts.insert().values(
            month=month, rule=rule, severity=severity, message=message,
            details_json=_dumps(details), dedup_key=dedup_key, created_at=utcnow(),
            deliveries_json="[]")).inserted_primary_key[0]  # type: ignore[index]
        self._append_audit(conn, month, audit_actor, audit_action, {"rule": rule, "severity": severity,
                                                                    "message": message})
        return new_id

    def record_deliveries(self, alert_id: int, deliveries: list[dict[str, Any]]) -> None:
        """One delivery attempt: delivered when every sink took the alert, else due again after a backoff."""
        delivered = all(d.get("ok") for d in deliveries)
        with self.write() as conn:
            row = conn.execute(sa.select(alerts.c.attempts, alerts.c.deliveries_json)
                               .where(alerts.c.id == alert_id)).mappings().one()
            attempts = int(row["attempts"]) + 1
            now = utcnow()
            history = [*json.loads(row["deliveries_json"] or "[]"), *({**d, "at": now.isoformat()} for d in deliveries)]
            wait = min(ALERT_RETRY_FIRST_S * 2 ** (attempts - 1), ALERT_RETRY_MAX_S)
            conn.execute(alerts.update().where(alerts.c.id == alert_id).values(
                deliveries_json=_dumps(history), attempts=attempts,
                delivered_at=now if delivered else None,
                next_attempt_at=None if delivered else now + timedelta(seconds=wait)))


def _issued_ticket(conn: Connection, request_id: str, month: str) -> str | None:
    """The nonce of the run ticket a request's approval (or a later repair) issued, None if none."""
    nonce = None
    for details_json in conn.execute(sa.select(audit.c.details_json).where(sa.and_(
            audit.c.month == month, audit.c.action.in_((approvals.APPROVE_ACTION, approvals.TICKET_ISSUED_ACTION))))
            .order_by(audit.c.id)).scalars():
        details = json.loads(details_json)
        if details.get("request_id") == request_id:
            nonce = details.get("ticket_nonce")
    return nonce


def _request_of(row: dict[str, Any]) -> Request:
    return Request(id=row["id"], kind=row["kind"], month=row["month"], version=row["version"],
                   binding=json.loads(row["binding_json"]), text=row["text"], requested_by=row["requested_by"],
                   requested_at=_aware(row["requested_at"]), expires_at=_aware(row["expires_at"]),
                   status=row["status"], decided_by=row["decided_by"], decided_at=_aware(row["decided_at"]),
                   decision_text=row["decision_text"], run_id=row["run_id"], done_at=_aware(row["done_at"]))


def _signature_problem(row: Any, keys: dict[str, list[str]]) -> str | None:
    """Why an entry's signed action does not stand (None when it does)."""
    try:
        signed = Signed.from_dict(json.loads(row["signed_json"]))
    except (IdentityError, ValueError):
        return f"entry {row['id']} ({row['action']}) holds an unreadable signature"
    if signed.actor != row["actor"]:
        return f"entry {row['id']} ({row['action']}) names {row['actor']} but was signed by {signed.actor}"
    if not check_signature(signed, keys.get(signed.actor, [])):
        return f"entry {row['id']} ({row['action']}) is not signed with {signed.actor}'s key"
    if row["nonce"] is not None:  # a signed action (not a run ticket): what was signed is what is recorded
        details = json.loads(row["details_json"])
        if signed.action != row["action"] or signed.month != row["month"] or signed.nonce != row["nonce"] or any(
                details.get(k) != v for k, v in signed.details.items()):
            return f"entry {row['id']} ({row['action']}) records other details than its actor signed"
    return None


def _state_problems(rows: Any, month_rows: Any, request_rows: list[Request]) -> list[tuple[int, str]]:
    """The state tables against the chain: who finalized and approved which version, who decided requests."""
    problems: list[tuple[int, str]] = []
    final: dict[str, tuple[Any, Any, Any, int]] = {}
    decisions: dict[str, tuple[str, str, int]] = {}
    for r in rows:
        details = json.loads(r["details_json"])
        if r["action"] == "finalize" and r["month"]:
            final[r["month"]] = (details.get("version"), details.get("finalized_by"), details.get("approver"), r["id"])
        elif r["action"] == "unlock" and r["month"]:
            final.pop(r["month"], None)
        elif r["action"] in (approvals.APPROVE_ACTION, approvals.REJECT_ACTION) and details.get("request_id"):
            decisions[str(details["request_id"])] = (r["action"], r["actor"], r["id"])
    for m in month_rows:
        expected = final.get(m["month"])
        stored = (m["final_version"], m["finalized_by"], m["approved_by"]) if m["final_version"] is not None else None
        if expected is None and stored is not None:
            problems.append((10**12, f"month {m['month']} is finalized (version {m['final_version']}) in the state "
                                     f"tables but no finalize entry says so"))
        elif expected is not None and stored != expected[:3]:
            problems.append((expected[3], f"month {m['month']}'s final version, finalizer or approver in the state "
                                          f"tables differ from entry {expected[3]} (version {expected[0]}, by "
                                          f"{expected[1]}, approved by {expected[2]})"))
    for req in request_rows:
        if req.decided_by is None:
            continue
        decision = decisions.get(req.id)
        verb = approvals.REJECT_ACTION if req.status == approvals.REJECTED else approvals.APPROVE_ACTION
        if decision is None or decision[:2] != (verb, req.decided_by):
            problems.append((decision[2] if decision else 10**12,
                             f"request {req.id} is {req.status} by {req.decided_by} in the state tables but no "
                             f"signed {verb} entry by {req.decided_by} says so"))
    return problems
