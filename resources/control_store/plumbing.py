"""The store's shared plumbing: the engine, serialized write transactions, the audit append and the month row.

Every room of the control store (resources/control_store/*_room.py) builds on `StoreBase`: one engine per
store, `write()` (one serialized transaction: BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL),
`read()`, `unit()` (the reads and writes of a run's admission or a step's check in one transaction), and
`_append_audit`, which every change calls inside its own transaction.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from batch.errors import ControlError
from batch.identity import Signed
from batch.lifecycle import PHASE_FINALIZED, PHASE_OPEN
from resources.control_store.tables import (
    GENESIS_HASH,
    PG_WRITE_LOCK_KEY,
    audit,
    audit_head,
    months,
)
from resources.migrations import HEAD_REVISION, current_revision, upgrade
from resources.store_trace import trace_transactions


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


class StoreBase:
    """The engine, its transactions, the audit append and the month row that every room shares."""

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
        self._local = threading.local()  # the connection of this thread's open `unit`, if any
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

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One serialized write transaction; inside a `unit`, a savepoint of the unit's transaction."""
        shared = self._unit_connection()
        if shared is not None:
            with shared.begin_nested():
                yield shared
            return
        with self.engine.begin() as conn:
            self._serialize(conn)
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        shared = self._unit_connection()
        if shared is not None:
            yield shared
            return
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def unit(self) -> Iterator[None]:
        """One serialized transaction for every read and write this thread makes through the store inside
        it: a run's admission, or a step's check with the reads that go with it. Each write inside is a
        savepoint, kept or undone on its own exactly as its own transaction would be, and what was kept
        is committed when the unit ends, also when an exception leaves it (a refusal after a ticket was
        claimed keeps the claim, as separate transactions did). A unit inside a unit is the outer one.
        Never wait inside a unit: it holds the store's write lock (another run's heartbeat waits for it)."""
        if self._unit_connection() is not None:
            yield
            return
        with self.engine.connect() as conn:
            transaction = conn.begin()
            self._local.connection = conn
            try:
                self._serialize(conn)
                yield
            finally:
                self._local.connection = None
                transaction.commit()

    def _unit_connection(self) -> Connection | None:
        return getattr(self._local, "connection", None)

    def _serialize(self, conn: Connection) -> None:
        """Writers one at a time: SQLite's BEGIN IMMEDIATE does it (make_engine); PostgreSQL takes an advisory lock."""
        if self.is_postgres:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_WRITE_LOCK_KEY})

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

    def _rows_by_month(self, table: sa.Table, month: str | None) -> list[dict[str, Any]]:
        """Rows of an append-only table in insertion order, of one month or of all."""
        query = sa.select(table).order_by(table.c.id)
        if month is not None:
            query = query.where(table.c.month == month)
        with self.read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]
