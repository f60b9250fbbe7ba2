"""Take and release a month's temporary lock."""

from __future__ import annotations

from batch.actions.checks import expect, may
from batch.actions.outcome import Outcome
from batch.identity import Signed
from batch.ports import ControlPort
from batch.times import local


def lock(store: ControlPort, signed: Signed) -> Outcome:
    """Take the month's temporary lock (details: admins, ttl_hours) for the admins named and the signer."""
    month = expect(signed, "lock")
    who = may(store, "lock", signed.actor, month)
    # The store checks in one write transaction the final lock, a lock held by another and the ttl.
    info = store.take_lock(signed)
    return Outcome("lock", who, month, f"{month} locked by {who} for {', '.join(info.admins)} until "
                                       f"{local(info.expires_at)}.", lock=info)


def release(store: ControlPort, signed: Signed) -> Outcome:
    """Release the month's temporary lock (its holder, or anyone once it expired)."""
    month = expect(signed, "release")
    who = may(store, "release", signed.actor, month)
    store.release_lock(signed)
    return Outcome("release", who, month, f"{month}: temporary lock released.")
