"""Where the product keeps its state, read from the environment at run time."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = ".batch_admin"
DEFAULT_ROLES_FILE = Path(__file__).resolve().parent.parent / "pipelines" / "roles.yaml"


@dataclass(frozen=True)
class Settings:
    """Resolved configuration: home folder, control store URL, roles file, Dagster home."""

    home: Path
    control_url: str
    roles_file: Path
    postgres_url: str | None

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        """Read settings from the environment; PostgreSQL is selected by BATCH_ADMIN_POSTGRES_URL alone."""
        env = os.environ if environ is None else environ
        home = Path(env.get("BATCH_ADMIN_HOME") or DEFAULT_HOME).expanduser().resolve()
        postgres_url = env.get("BATCH_ADMIN_POSTGRES_URL") or None
        control_url = (
            env.get("BATCH_ADMIN_CONTROL_URL")
            or postgres_url
            or f"sqlite:///{home / 'control.db'}"
        )
        roles = Path(env.get("BATCH_ADMIN_ROLES") or DEFAULT_ROLES_FILE).expanduser().resolve()
        return cls(home=home, control_url=control_url, roles_file=roles, postgres_url=postgres_url)
