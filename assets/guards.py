"""What every writing asset does first: who acts, the final lock, the temporary lock, the lease."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from pipelines.roles import ACTOR_TAG, NOTE_TAG, RoleError, Roles
from resources.control_store import ControlError, ControlStore
from resources.settings import Settings

# Assets of the monthly chain in execution order; the last selected one releases the lease.
CHAIN = ("landed_inputs", "validated_inputs", "capacity_plan", "allocation_parts", "allocation_proposal",
         "allocation_export")


@dataclass(frozen=True)
class RunIdentity:
    """The month, actor and change note of the run an asset executes in."""

    month: str
    actor: str | None
    note: str | None
    run_id: str


def refuse(message: str) -> dg.Failure:
    """A failure that must not be retried: retrying cannot make a refusal pass."""
    return dg.Failure(description=message, allow_retries=False)


def identity(context: dg.AssetExecutionContext) -> RunIdentity:
    tags = context.run.tags
    return RunIdentity(context.partition_key, tags.get(ACTOR_TAG) or None,
                       tags.get(NOTE_TAG) or None, context.run.run_id)


def _holder_finished(context: dg.AssetExecutionContext, holder_run_id: str | None) -> bool:
    if holder_run_id is None or holder_run_id == context.run.run_id:
        return False
    run = context.instance.get_run_by_id(holder_run_id)
    return run is None or run.is_finished


def begin_write(context: dg.AssetExecutionContext, store: ControlStore, what: str) -> RunIdentity:
    """Refuse before anything is written when the month is finalized, locked for others or busy."""
    who = identity(context)
    try:
        if who.actor is not None:
            Roles.load(Settings.from_env().roles_file).require_admin(who.actor, f"{what} {who.month}")
        store.guard_write(who.month, who.actor, what)
        holder = store.lease_holder(who.month)
        store.acquire_lease(who.month, who.run_id, holder_finished=_holder_finished(context, holder))
    except (ControlError, RoleError) as exc:
        raise refuse(str(exc)) from None
    return who


def end_write(context: dg.AssetExecutionContext, store: ControlStore, asset_name: str) -> None:
    """Release the month's lease after the last asset of the run's selection."""
    selected = {key.to_user_string() for key in (context.run.asset_selection or [])}
    remaining = [name for name in CHAIN[CHAIN.index(asset_name) + 1:] if name in selected]
    if not remaining:
        store.release_lease(context.partition_key, context.run.run_id)
