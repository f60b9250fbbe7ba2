"""A run contending for a month's lease in a process of its own. Kept out of test_lease_liveness.py, which
imports Dagster: each spawned process imports the module its target lives in (0.3 s here, 3.4 s there)."""

from __future__ import annotations

from resources.control_store import ControlError
from tests.signing import open_store

MONTH = "2026-12"


def take_over(url: str, who: str, queue) -> None:
    store = open_store(url, migrate=False)
    try:
        dead = store.acquire_lease(MONTH, f"run-{who}")
        queue.put(("won", who, dead.run_id if dead else None))
    except ControlError as exc:
        queue.put(("lost", who, str(exc)))
    finally:
        store.dispose()
