"""The control store: phases, versions, locks, parameters, adjustments, audit and alerts.

SQLAlchemy Core over SQLite (default, under the home folder) or PostgreSQL (by URL).
Every mutating action runs in one serialized write transaction that checks its
preconditions, changes state and appends a hash-chained audit entry, so concurrent
processes see exactly one winner and no audit entry is lost.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, overload

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from batch.errors import ControlError
from batch.lifecycle import PHASE_FINALIZED, PHASE_OPEN, PHASE_PLANNING, PHASE_PROPOSED
from resources.migrations import HEAD_REVISION, current_revision, upgrade

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
)

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
                action: str, details_json: str) -> str:
    payload = _dumps([prev_hash, month, _aware(at).isoformat(), actor, action, details_json])
    return hashlib.sha256(payload.encode()).hexdigest()


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


class ControlStore:
    """Months' lifecycle state with serialized, audited writes."""

    def __init__(self, url: str, migrate: bool | None = None):
        """Open the store; migrate=None migrates an embedded SQLite store on first use only."""
        self.url = url
        self.engine = make_engine(url)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        revision = current_revision(self.engine)
        if revision == HEAD_REVISION:
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
                      action: str, details: dict[str, Any]) -> None:
        head = conn.execute(sa.select(audit_head).where(audit_head.c.id == 1)).mappings().first()
        prev_hash = head["last_hash"] if head else GENESIS_HASH
        at = utcnow()
        details_json = _dumps(details)
        digest = _entry_hash(prev_hash, month, at, actor, action, details_json)
        new_id = conn.execute(
            audit.insert().values(month=month, at=at, actor=actor, action=action,
                                  details_json=details_json, prev_hash=prev_hash, hash=digest)
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
            f"To change it, run: batch-admin unlock {row['month']} --actor ADMIN --approver APPROVER "
            f"--reason TEXT"
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
        out = []
        for r in rows:
            item = dict(r)
            item["params"] = json.loads(item.pop("params_json"))
            item["metrics"] = json.loads(item.pop("metrics_json"))
            item["created_at"] = _aware(item["created_at"])
            out.append(item)
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
        """The latest adjustment of each request wins."""
        with self.read() as conn:
            return self._pins_and_exclusions(conn, month)

    def _pins_and_exclusions(self, conn: Connection, month: str) -> tuple[dict[str, str], set[str]]:
        pins: dict[str, str] = {}
        excluded: set[str] = set()
        for adj in conn.execute(sa.select(adjustments).where(adjustments.c.month == month)
                                .order_by(adjustments.c.id)).mappings():
            req = adj["request_id"]
            pins.pop(req, None)
            excluded.discard(req)
            if adj["kind"] == "pin":
                pins[req] = adj["resource_id"]
            elif adj["kind"] == "exclude":
                excluded.add(req)
        return pins, excluded

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

    def verify_audit(self) -> AuditVerification:
        """Re-compute the whole chain; any changed, inserted or removed entry breaks it."""
        with self.read() as conn:
            rows = conn.execute(sa.select(audit).order_by(audit.c.id)).mappings().all()
            head = conn.execute(sa.select(audit_head)).mappings().first()
        problems: list[str] = []
        prev = GENESIS_HASH
        for r in rows:
            if r["prev_hash"] != prev:
                problems.append(f"entry {r['id']} does not follow the entry before it (one was removed or changed)")
            expected = _entry_hash(r["prev_hash"], r["month"], r["at"], r["actor"], r["action"],
                                   r["details_json"])
            if expected != r["hash"]:
                problems.append(f"entry {r['id']} ({r['action']}) was changed after it was written")
            prev = r["hash"]
        if head is None and rows:
            problems.append("the chain head is missing")
        if head is not None:
            if head["entries"] != len(rows):
                problems.append(f"the chain holds {len(rows)} entries but {head['entries']} were written")
            if not rows or head["last_hash"] != rows[-1]["hash"]:
                problems.append("the newest entries were removed or changed")
        return AuditVerification(ok=not problems, entries=len(rows), problems=problems)

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
    def set_params(self, month: str, actor: str, changes: dict[str, Any]) -> dict[str, Any]:
        with self.write() as conn:
            row = self._month_row(conn, month)
            self._check_not_finalized(row)
            self._check_lock(conn, month, actor, "change parameters of")
            current = json.loads(row["params_json"] or "{}")
            before = {k: current.get(k) for k in changes}
            current.update(changes)
            conn.execute(months.update().where(months.c.month == month).values(
                params_json=_dumps(current), updated_at=utcnow()))
            self._append_audit(conn, month, actor, "params", {"before": before, "after": changes})
        return current

    def add_adjustment(self, month: str, actor: str, kind: str, request_id: str,
                       resource_id: str | None, note: str) -> None:
        if kind not in ("pin", "exclude"):
            raise ControlError(f"Adjustment kind must be pin or exclude, not {kind!r}.")
        if not note or not note.strip():
            raise ControlError("An adjustment needs a non-empty --note saying why.")
        with self.write() as conn:
            row = self._month_row(conn, month)
            self._check_not_finalized(row)
            self._check_lock(conn, month, actor, "adjust")
            conn.execute(adjustments.insert().values(
                month=month, kind=kind, request_id=request_id, resource_id=resource_id,
                note=note, actor=actor, created_at=utcnow()))
            self._append_audit(conn, month, actor, "adjust",
                               {"kind": kind, "request_id": request_id,
                                "resource_id": resource_id, "note": note})

    def take_lock(self, month: str, actor: str, admins: list[str], ttl_hours: float) -> LockInfo:
        # NaN compares false both ways: the range check is written so that it refuses NaN too.
        if not 0 < ttl_hours <= MAX_LOCK_TTL_HOURS:
            raise ControlError(f"The lock's time to live must be more than 0 and at most {MAX_LOCK_TTL_HOURS} hours "
                               f"(31 days), not {ttl_hours}.")
        admins = sorted(set(admins) | {actor})
        with self.write() as conn:
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
                               {"admins": admins, "ttl_hours": ttl_hours,
                                "expires_at": info.expires_at.isoformat()})
        return info

    def release_lock(self, month: str, actor: str) -> None:
        with self.write() as conn:
            existing = self._lock(conn, month)
            if existing is None:
                raise ControlError(f"Month {month} holds no temporary lock to release.")
            if existing.active() and actor != existing.holder:
                raise ControlError(
                    f"Only {existing.holder}, who holds the lock on {month}, may release it "
                    f"before it expires at {existing.expires_at.isoformat(timespec='seconds')}."
                )
            conn.execute(locks.delete().where(locks.c.month == month))
            self._append_audit(conn, month, actor, "release", {"holder": existing.holder})

    def acquire_lease(self, month: str, run_id: str, ttl_hours: float = 6.0,
                      finished_holder: str | None = None) -> None:
        """One execution per month: refuse while another live run holds the month."""
        with self.write() as conn:
            row = conn.execute(sa.select(leases).where(leases.c.month == month)).mappings().first()
            now = utcnow()
            if row is not None and row["run_id"] != run_id:
                # Compare and swap: only the holder the caller saw finish may be replaced, so two
                # runs that both saw it finish cannot both take the month.
                if _aware(row["expires_at"]) > now and row["run_id"] != finished_holder:
                    raise ControlError(
                        f"Month {month} is being executed by run {row['run_id']} since "
                        f"{_aware(row['acquired_at']).isoformat(timespec='seconds')}; two runs for "
                        f"the same month never execute at the same time."
                    )
            if row is not None and row["run_id"] == run_id:
                return
            conn.execute(leases.delete().where(leases.c.month == month))
            conn.execute(leases.insert().values(month=month, run_id=run_id, acquired_at=now,
                                                expires_at=now + timedelta(hours=ttl_hours)))

    def lease_holder(self, month: str) -> str | None:
        with self.read() as conn:
            return conn.execute(sa.select(leases.c.run_id).where(leases.c.month == month)).scalar()

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
            self._append_audit(conn, month, actor, "plan", {"run_id": run_id, **summary})

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
                                "export_path": export_path})

    def finalize(self, month: str, version: int, actor: str, approver: str) -> dict[str, Any]:
        """Record the approval and set the final lock in one transaction; one winner only."""
        if approver == actor:
            raise ControlError(f"The approver must be someone other than {actor} (four eyes).")
        with self.write() as conn:
            row = self._month_row(conn, month)
            self._check_not_finalized(row)
            self._check_lock(conn, month, actor, "finalize")
            exists = conn.execute(sa.select(versions.c.version).where(sa.and_(
                versions.c.month == month, versions.c.version == version))).first()
            if exists is None:
                raise ControlError(f"Month {month} has no version {version} to finalize.")
            now = utcnow()
            result = conn.execute(months.update().where(sa.and_(
                months.c.month == month, months.c.phase != PHASE_FINALIZED)).values(
                phase=PHASE_FINALIZED, final_version=version, finalized_by=actor,
                approved_by=approver, finalized_at=now, updated_at=now))
            if result.rowcount != 1:
                raise ControlError(f"Month {month} was finalized by someone else meanwhile.")
            conn.execute(versions.update().where(sa.and_(
                versions.c.month == month, versions.c.version == version)).values(status="final"))
            conn.execute(locks.delete().where(locks.c.month == month))
            self._append_audit(conn, month, actor, "finalize",
                               {"version": version, "approver": approver})
        return self.month(month)

    def unlock(self, month: str, actor: str, approver: str, reason: str) -> None:
        """Audited unlock of a finalized month back to proposed."""
        if not reason or not reason.strip():
            raise ControlError("An unlock needs a non-empty --reason.")
        if approver == actor:
            raise ControlError(f"The approver must be someone other than {actor} (four eyes).")
        with self.write() as conn:
            row = self._month_row(conn, month)
            if row["phase"] != PHASE_FINALIZED:
                raise ControlError(f"Month {month} is not finalized (phase {row['phase']}); there is nothing to unlock.")
            conn.execute(versions.update().where(sa.and_(
                versions.c.month == month, versions.c.version == row["final_version"])).values(
                status="proposed"))
            self._set_phase(conn, month, PHASE_PROPOSED, final_version=None, finalized_by=None,
                            approved_by=None, finalized_at=None)
            self._append_audit(conn, month, actor, "unlock",
                               {"approver": approver, "reason": reason,
                                "was_final_version": row["final_version"]})

    def add_alert(self, month: str | None, rule: str, severity: str, message: str,
                  details: dict[str, Any], dedup_key: str) -> int | None:
        """Store an alert unless one with the same dedup key exists; returns its id."""
        with self.write() as conn:
            seen = conn.execute(sa.select(alerts.c.id).where(alerts.c.dedup_key == dedup_key)).first()
            if seen is not None:
                return None
            new_id = conn.execute(alerts.insert().values(
                month=month, rule=rule, severity=severity, message=message,
                details_json=_dumps(details), dedup_key=dedup_key, created_at=utcnow(),
                deliveries_json="[]")).inserted_primary_key[0]  # type: ignore[index]
            self._append_audit(conn, month, None, "alert", {"rule": rule, "severity": severity,
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
