"""Who may do what: roles and public keys from a YAML file, and the acting identity.

The roles file lists admins, approvers, system identities (which may only plan) and each person's
public key. It is deployment configuration: the control store keeps the accepted copy and refuses a
changed file until an admin and an approver accept the change.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from batch.identity import DEMO_PUBLIC_KEYS
from batch.names import ACTOR_TAG, ACTOR_VAR, MONTH_TAG, NOTE_TAG  # noqa: F401  (importers take them from here too)


class RoleError(PermissionError):
    """An identity that is unknown or lacks the role; str() is one clear sentence."""


@dataclass(frozen=True)
class Roles:
    """Admins and approvers from the roles file."""

    admins: frozenset[str]
    approvers: frozenset[str]
    source: str
    system: frozenset[str] = frozenset()
    keys: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    text: str = field(default="", hash=False, compare=False)

    @classmethod
    def load(cls, path: Path) -> Roles:
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            raise RoleError(f"Roles file {path} does not exist (set BATCH_ADMIN_ROLES).") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RoleError(f"Roles file {path} cannot be read: {exc}.") from None
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, source: str) -> Roles:
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise RoleError(f"Roles file {source} is not valid YAML: {str(exc).splitlines()[0]}.") from None
        if not isinstance(data, dict):
            raise RoleError(f"Roles file {source} must be a mapping with admins, approvers, system and keys.")
        keys = data.get("keys") or {}
        if not isinstance(keys, dict):
            raise RoleError(f"Roles file {source}: keys must map each name to its public key.")

        def names(entry: str) -> frozenset[str]:
            value = data.get(entry) or []
            if not isinstance(value, list):
                raise RoleError(f"Roles file {source}: {entry} must be a list of names.")
            return frozenset(map(str, value))

        roles = cls(names("admins"), names("approvers"), source, names("system"),
                    {str(k): str(v) for k, v in keys.items()}, text)
        clash = sorted(roles.system & (roles.admins | roles.approvers))
        if clash:
            raise RoleError(f"Roles file {source}: system identities may only plan and cannot also be people: "
                            f"{', '.join(clash)}.")
        return roles

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def known(self, who: str) -> bool:
        return who in self.admins or who in self.approvers

    def refuse_demo_keys(self) -> None:
        """Refuse roles that hold a shipped demo public key (any control store but the embedded default)."""
        names = sorted(who for who, key in self.keys.items() if key in DEMO_PUBLIC_KEYS)
        if names:
            raise RoleError(f"The roles file {self.source} holds the shipped demo public key of {', '.join(names)}, "
                            f"whose private keys are public (pipelines/demo_keys), so only the embedded default "
                            f"accepts them: make each person's own key with `batch-admin keygen NAME` and put its "
                            f"public key in the roles file.")

    def public_keys(self, who: str) -> list[str]:
        key = self.keys.get(who)
        return [key] if key else []

    def require_known(self, who: str | None, action: str) -> str:
        """Anyone in the roles file (admin or approver) may do `action`; nobody else."""
        if not who:
            raise RoleError(f"Who is acting? Give --actor or BATCH_ADMIN_ACTOR to {action}.")
        if not self.known(who):
            raise RoleError(f"Unknown identity {who!r}: not in the roles file {self.source}.")
        return who

    def require_admin(self, who: str | None, action: str) -> str:
        if not who:
            raise RoleError(f"Who is acting? Give --actor or BATCH_ADMIN_ACTOR to {action}.")
        if not self.known(who):
            raise RoleError(f"Unknown identity {who!r}: not in the roles file {self.source}.")
        if who not in self.admins:
            raise RoleError(f"{who} is not an admin in {self.source} and may not {action}.")
        return who


def actor_from(cli_value: str | None = None) -> str | None:
    """Whose key signs: --actor, then BATCH_ADMIN_ACTOR (the key proves who it is)."""
    return cli_value or os.environ.get(ACTOR_VAR) or None
