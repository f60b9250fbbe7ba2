"""The locks and leases room: a month's temporary lock for its admins, and the lease of the one run
executing a month (with its heartbeat)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from batch.errors import ControlError
from batch.identity import Signed
from resources.control_store.key_room import KeyRoom
from resources.control_store.plumbing import _aware, _dumps, utcnow
from resources.control_store.tables import (
    MAX_LOCK_TTL_HOURS,
    leases,
    locks,
    months,
)
from resources.settings import lease_stale_after_s


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
        """True when the holder has not beaten for lease_stale_after_s(), or the lease expired."""
        return self.why_dead(now) is not None

    def why_dead(self, now: datetime | None = None) -> str | None:
        """Why the holder counts as dead ("heartbeat N s ago", "expired at ..."), None while it lives."""
        now = now or utcnow()
        if self.heartbeat_at is not None and self.heartbeat_age(now) > lease_stale_after_s():
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


# When a store of this process last beat each run's leases (time.monotonic()): the run worker's heartbeat
# (pipelines/executor.py) skips a beat that a step of its run, executing in the same process, has just written.
_BEATEN: dict[str, float] = {}


def last_beat(run_id: str) -> float | None:
    """When this process last beat the run's leases (time.monotonic()), None if it never did."""
    return _BEATEN.get(run_id)


def forget_beats(run_id: str) -> None:
    _BEATEN.pop(run_id, None)


def _lease_of(row: Any) -> LeaseInfo:
    return LeaseInfo(month=row["month"], run_id=row["run_id"], acquired_at=_aware(row["acquired_at"]),
                     expires_at=_aware(row["expires_at"]), heartbeat_at=_aware(row["heartbeat_at"]))


class LockRoom(KeyRoom):
    """Temporary locks (signed by an admin) and run leases."""

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

    def acquire_lease(self, month: str, run_id: str, ttl_hours: float = 6.0,
                      finished_holder: str | None = None) -> LeaseInfo | None:
        """One execution per month: refuse while another live run holds the month.

        The month is taken over from a holder the caller saw finish (`finished_holder`), or from a
        dead one (no heartbeat for lease_stale_after_s(), or the lease expired); the dead holder's
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
                    f"{lease_stale_after_s():g} s old."
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
            held = conn.execute(leases.update().where(leases.c.run_id == run_id).values(heartbeat_at=utcnow())).rowcount
        _BEATEN[run_id] = time.monotonic()
        return held

    def release_lease(self, month: str, run_id: str) -> None:
        with self.write() as conn:
            conn.execute(leases.delete().where(sa.and_(leases.c.month == month,
                                                       leases.c.run_id == run_id)))
