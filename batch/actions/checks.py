"""The checks every action shares: the signed action is the one expected, and its actor holds the role."""

from __future__ import annotations

from batch.errors import ControlError
from batch.identity import IdentityError, Signed
from batch.months import check_month
from batch.ports import ControlPort

ADMIN = "admin"
KNOWN = "known"
APPROVER = "approver"

# Who may do what, and the words a refusal uses: action -> (role, what they may not do, {month} filled in).
RULES: dict[str, tuple[str, str]] = {
    "params": (ADMIN, "change parameters of {month}"),
    "adjust": (ADMIN, "adjust {month}"),
    "lock": (ADMIN, "lock {month}"),
    "release": (ADMIN, "release the lock of {month}"),
    "finalize": (ADMIN, "finalize {month}"),
    "unlock": (ADMIN, "unlock {month}"),
    "roles": (ADMIN, "request a change of the roles"),
    "run": (ADMIN, "run {month}"),
    "plan": (ADMIN, "plan {month}"),
    "export": (KNOWN, "export {month}"),
}


def may(store: ControlPort, action: str, actor: str | None, month: str | None, *, gate: bool = True) -> str:
    """The actor's name once they hold the role `action` needs (RoleError otherwise): clients ask this
    before they load a key, so a person without the role hears that rather than of a missing key."""
    role, what = RULES[action]
    roles = store.roles(gate=gate)
    phrase = what.format(month=month or "")
    return roles.require_known(actor, phrase) if role == KNOWN else roles.require_admin(actor, phrase)


def expect(signed: Signed, action: str, *, month_required: bool = True) -> str:
    """The month of a signed action of the expected kind (a signature for one action never does another);
    "" for an action of no month, when `month_required` is false."""
    if not isinstance(signed, Signed):
        raise IdentityError(f"An unsigned {action} is refused: every action is signed with its actor's key.")
    if signed.action != action:
        raise IdentityError(f"The signature by {signed.actor} is for {signed.action}, not {action}: refused.")
    if signed.month is None:
        if not month_required:
            return ""
        raise ControlError(f"A {action} names a month.")
    return check_month(signed.month)
