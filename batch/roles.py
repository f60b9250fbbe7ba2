"""Who may do what: roles from a YAML file, and the acting identity."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

ACTOR_TAG = "batch_admin/actor"
NOTE_TAG = "batch_admin/note"
MONTH_TAG = "batch_admin/month"


class RoleError(PermissionError):
    """An identity that is unknown or lacks the role; str() is one clear sentence."""


@dataclass(frozen=True)
class Roles:
    """Admins and approvers from the roles file."""

    admins: frozenset[str]
    approvers: frozenset[str]
    source: str

    @classmethod
    def load(cls, path: Path) -> Roles:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise RoleError(f"Roles file {path} does not exist (set BATCH_ADMIN_ROLES).") from None
        return cls(frozenset(map(str, data.get("admins") or [])),
                   frozenset(map(str, data.get("approvers") or [])), str(path))

    def known(self, who: str) -> bool:
        return who in self.admins or who in self.approvers

    def require_known(self, who: str | None, action: str) -> str:
        """Anyone in the roles file (admin or approver) may do `action`; nobody else."""
        if not who:
            raise RoleError(f"Who is acting? Give --actor, BATCH_ADMIN_ACTOR or the run tag {ACTOR_TAG} to {action}.")
        if not self.known(who):
            raise RoleError(f"Unknown identity {who!r}: not in the roles file {self.source}.")
        return who

    def require_admin(self, who: str | None, action: str) -> str:
        if not who:
            raise RoleError(f"Who is acting? Give --actor, BATCH_ADMIN_ACTOR or the run tag {ACTOR_TAG} to {action}.")
        if not self.known(who):
            raise RoleError(f"Unknown identity {who!r}: not in the roles file {self.source}.")
        if who not in self.admins:
            raise RoleError(f"{who} is not an admin in {self.source} and may not {action}.")
        return who

    def require_approver(self, approver: str | None, actor: str) -> str:
        if not approver:
            raise RoleError("An approver is required (--approver).")
        if not self.known(approver):
            raise RoleError(f"Unknown identity {approver!r}: not in the roles file {self.source}.")
        if approver not in self.approvers:
            raise RoleError(f"{approver} does not hold the approver role in {self.source}.")
        if approver == actor:
            raise RoleError(f"The approver must be someone other than {actor} (four eyes).")
        return approver


def actor_from(cli_value: str | None = None, tags: dict[str, str] | None = None) -> str | None:
    """The acting identity: --actor, then BATCH_ADMIN_ACTOR, then the run tag."""
    return cli_value or os.environ.get("BATCH_ADMIN_ACTOR") or (tags or {}).get(ACTOR_TAG) or None
