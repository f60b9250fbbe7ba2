"""Finalization and unlock: the two four-eyes actions, shared by the CLI and the Dagster jobs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.guards import refuse
from pipelines.roles import ACTOR_TAG, RoleError, Roles
from resources.control_store import ControlError, ControlStore
from resources.settings import Settings


def _roles() -> Roles:
    return Roles.load(Settings.from_env().roles_file)


def finalize_month(store: ControlStore, exports, month: str, tags: Mapping[str, str],
                   version: int, approver: str, run_id: str) -> dict[str, Any]:
    """Approve a version and set the final lock in one transaction, then write the official export."""
    actor = tags.get(ACTOR_TAG) or None
    try:
        roles = _roles()
        roles.require_admin(actor, f"finalize {month}")
        roles.require_approver(approver, actor)
        if version not in exports.versions(month):
            raise ControlError(f"Month {month} has no exported version {version} to finalize.")
        row = store.finalize(month, version, actor, approver)
    except (ControlError, RoleError) as exc:
        raise refuse(str(exc)) from None
    info = exports.write_final(month, version, {
        "finalized_by": actor, "approved_by": approver, "run_id": run_id,
        "finalized_at": row["finalized_at"].isoformat() if row.get("finalized_at") else None,
    })
    return info.manifest


def unlock_month(store: ControlStore, month: str, actor: str | None, approver: str,
                 reason: str, alert=None) -> None:
    """Audited unlock of a finalized month back to proposed; always raises an alert."""
    try:
        roles = _roles()
        roles.require_admin(actor, f"unlock {month}")
        roles.require_approver(approver, actor)
        store.unlock(month, actor, approver, reason)
    except (ControlError, RoleError) as exc:
        raise refuse(str(exc)) from None
    if alert is not None:
        alert(month, actor, approver, reason)
