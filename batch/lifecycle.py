"""The month's lifecycle: phases, and the four-eyes rules of finalization and unlock."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batch.errors import ControlError
from batch.roles import ACTOR_TAG, Roles

# Phases of a month (SPEC §4): open -> planning -> proposed -> finalized (-> proposed by unlock).
PHASE_OPEN = "open"
PHASE_PLANNING = "planning"
PHASE_PROPOSED = "proposed"
PHASE_FINALIZED = "finalized"
PHASES = (PHASE_OPEN, PHASE_PLANNING, PHASE_PROPOSED, PHASE_FINALIZED)


def finalize_month(roles: Roles, store, exports, month: str, tags: Mapping[str, str],
                   version: int, approver: str, run_id: str) -> dict[str, Any]:
    """Approve a version and set the final lock in one transaction, then write the official export."""
    actor = roles.require_admin(tags.get(ACTOR_TAG) or None, f"finalize {month}")
    roles.require_approver(approver, actor)
    if version not in exports.versions(month):
        raise ControlError(f"Month {month} has no exported version {version} to finalize.")
    row = store.finalize(month, version, actor, approver)
    info = exports.write_final(month, version, {
        "finalized_by": actor, "approved_by": approver, "run_id": run_id,
        "finalized_at": row["finalized_at"].isoformat() if row.get("finalized_at") else None,
    })
    return info.manifest


def unlock_month(roles: Roles, store, month: str, actor: str | None, approver: str, reason: str) -> None:
    """Audited unlock of a finalized month back to proposed (four eyes)."""
    actor = roles.require_admin(actor, f"unlock {month}")
    roles.require_approver(approver, actor)
    store.unlock(month, actor, approver, reason)
