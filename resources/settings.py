"""Where the product keeps its state: read from the environment at run time, never at import."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from batch.names import (  # noqa: F401  (the names settings are read by; importers take them from here too)
    CELERY_BROKER_VAR,
    CONTROL_DB,
    CONTROL_VAR,
    DAGSTER_DIR,
    DAGSTER_HOME_VAR,
    DEFAULT_HOME,
    EXECUTOR_VAR,
    HOME_VAR,
    IO_BASE_VAR,
    LANDING_DIR,
    LEASE_STALE_VAR,
    ORIGIN_VAR,
    POSTGRES_VAR,
    ROLES_VAR,
    VIEW_URL_VAR,
)

DEFAULT_ROLES_FILE = Path(__file__).resolve().parent.parent / "pipelines" / "roles.yaml"
# auto (default): the run's steps execute in its run worker when the `solver` pool lets one solve
# run at a time (nothing would run side by side), else in forked processes (pipelines/executor.py).
EXECUTORS = ("auto", "multiprocess", "in_process", "celery")


class SettingsError(RuntimeError):
    """A setting that production needs and nobody set; str() says which and how."""


# A run beats its month's lease every lease_heartbeat_s() while its run worker lives; a lease without a beat
# for lease_stale_after_s() belongs to a dead run and the month's next run takes it over (resources/
# control_store). BATCH_ADMIN_LEASE_STALE_S sets the second, the same on every process of a deployment (the
# beat follows at a quarter of it): a month back sooner after a lost run, and the tests that kill one.
LEASE_STALE_AFTER_S = 60
BEATS_PER_STALE = 4
LEASE_HEARTBEAT_S = LEASE_STALE_AFTER_S // BEATS_PER_STALE


def lease_stale_after_s(environ: Mapping[str, str] | None = None) -> float:
    """Seconds without a heartbeat after which a month's lease is dead (BATCH_ADMIN_LEASE_STALE_S, default 60)."""
    raw = (os.environ if environ is None else environ).get(LEASE_STALE_VAR, "").strip()
    if not raw:
        return LEASE_STALE_AFTER_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise SettingsError(f"{LEASE_STALE_VAR}={raw!r} is not a number of seconds above 0 (default {LEASE_STALE_AFTER_S}).")
    return seconds


def lease_heartbeat_s(environ: Mapping[str, str] | None = None) -> float:
    """How often a run worker beats its leases: a quarter of lease_stale_after_s() (15 s by default)."""
    return lease_stale_after_s(environ) / BEATS_PER_STALE


def psycopg2_url(url: str) -> str:
    """The same PostgreSQL URL with the psycopg2 driver named (SQLAlchemy 2.1 would pick psycopg 3)."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql+psycopg2://{rest}" if sep and scheme in ("postgresql", "postgres") else url


def is_embedded(control_url: str, home: Path | str) -> bool:
    """Whether a control store URL is the embedded default of that home (SQLite, home/control.db)."""
    return control_url == f"sqlite:///{Path(home).expanduser().resolve() / CONTROL_DB}"


@dataclass(frozen=True)
class Settings:
    """Resolved configuration: home folder, control store URL, IO base, roles file, Dagster home."""

    home: Path
    control_url: str
    io_base: str
    roles_file: Path
    postgres_url: str | None
    executor: str = "auto"
    celery_broker: str | None = None

    @property
    def dagster_home(self) -> Path:
        return self.home / DAGSTER_DIR

    @property
    def embedded(self) -> bool:
        """The embedded default: the SQLite control store under the home (the only one where demo keys act)."""
        return self.postgres_url is None and is_embedded(self.control_url, self.home)

    @property
    def landing(self) -> Path:
        return self.home / LANDING_DIR

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings; PostgreSQL (production) is selected by BATCH_ADMIN_POSTGRES_URL alone and
        then needs BATCH_ADMIN_HOME set explicitly: production never falls back to ./.batch_admin."""
        env = os.environ if environ is None else environ
        postgres_url = env.get(POSTGRES_VAR) or None
        if postgres_url and not env.get(HOME_VAR):
            raise SettingsError(f"{POSTGRES_VAR} is set (production) but {HOME_VAR} is not: set it to the "
                                f"folder that holds landing/ and exports/ on every host.")
        home = Path(env.get(HOME_VAR) or DEFAULT_HOME).expanduser().resolve()
        control_url = env.get(CONTROL_VAR) or postgres_url or f"sqlite:///{home / CONTROL_DB}"
        io_base = env.get(IO_BASE_VAR) or str(home / DAGSTER_DIR / "io")
        roles = Path(env.get(ROLES_VAR) or DEFAULT_ROLES_FILE).expanduser().resolve()
        executor = (env.get(EXECUTOR_VAR) or EXECUTORS[0]).strip().lower()
        celery_broker = env.get(CELERY_BROKER_VAR) or None
        if executor not in EXECUTORS:
            raise SettingsError(f"{EXECUTOR_VAR}={executor!r} names no executor: use one of {', '.join(EXECUTORS)}.")
        if executor == "celery" and not (celery_broker and postgres_url):
            # Workers on other hosts find the run and record their steps in the shared instance.
            raise SettingsError(f"{EXECUTOR_VAR}=celery needs {CELERY_BROKER_VAR} (the broker the workers listen on, "
                                f"e.g. pyamqp://guest@127.0.0.1:5672//) and {POSTGRES_VAR} (the instance they share).")
        return cls(home=home, control_url=control_url, io_base=io_base, roles_file=roles,
                   postgres_url=postgres_url, executor=executor, celery_broker=celery_broker)

    def protected_paths(self, key_paths: tuple[Path, ...] = ()) -> tuple[Path, ...]:
        """What no export or report may overwrite outside the home: the roles file, people's keys, an
        SQLite control store and a local IO base elsewhere."""
        paths = [self.roles_file, *key_paths]
        if self.control_url.startswith("sqlite:///"):
            paths.append(Path(self.control_url.split("///", 1)[1]))
        if "://" not in self.io_base:
            paths.append(Path(self.io_base))
        return tuple(paths)

    def environment(self) -> dict[str, str]:
        """The variables every Dagster process of this deployment reads (the resources' EnvVars)."""
        env = {HOME_VAR: str(self.home), CONTROL_VAR: self.control_url, IO_BASE_VAR: self.io_base,
               ROLES_VAR: str(self.roles_file), DAGSTER_HOME_VAR: str(self.dagster_home)}
        if self.postgres_url:
            env[POSTGRES_VAR] = psycopg2_url(self.postgres_url)
        if self.executor != EXECUTORS[0]:
            env[EXECUTOR_VAR] = self.executor
        if self.celery_broker:
            env[CELERY_BROKER_VAR] = self.celery_broker
        return env

    def export(self) -> None:
        """Put environment() into this process's environment, for the Dagster processes it starts."""
        os.environ.update(self.environment())


# Where people open the admin view (links in alerts and in Dagster metadata): the deployment's
# BATCH_ADMIN_ORIGIN (the origin its passkeys are made for), else BATCH_ADMIN_VIEW_URL (`batch-admin ui`
# sets it for the processes it starts), else the embedded default.
DEFAULT_VIEW_URL = "http://localhost:3000"


def view_origin(environ: Mapping[str, str] | None = None) -> str:
    """The admin view's public origin, without a trailing slash."""
    return known_view_origin(environ) or DEFAULT_VIEW_URL


def known_view_origin(environ: Mapping[str, str] | None = None) -> str | None:
    """The admin view's origin when the deployment or `batch-admin ui` said it, else None (nothing serves
    the view's images for sure: Dagster metadata then embeds its charts)."""
    env = os.environ if environ is None else environ
    return (env.get(ORIGIN_VAR) or env.get(VIEW_URL_VAR) or "").strip().rstrip("/") or None


# Written in DAGSTER_HOME by `batch-admin ui` while it runs (batch_view/server.py): its Dagster webserver's
# URL and pid; `batch-admin run`, `plan` and `approve` submit through that webserver (batch_cli/ui_runs.py).
UI_FILE = "ui.json"
# A daemon beats every 30 s; Dagster tolerates 30 minutes of silence before it calls one unhealthy,
# which would leave a CLI run queued for half an hour after `make ui` stopped. Two missed beats do.
DAEMON_SILENCE_S = 30
