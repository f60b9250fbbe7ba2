"""Fixtures shared by the whole suite: an isolated home folder and the real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from resources.settings import Settings

POSTGRES_ADMIN_URL = os.environ.get("BATCH_ADMIN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Iterator:
    """An empty BATCH_ADMIN_HOME with the embedded default; nothing leaks between tests."""
    path = tmp_path / "home"
    path.mkdir()
    use_home(monkeypatch, path)
    yield path


def use_home(monkeypatch, path) -> None:
    """Point every setting at the embedded default under `path`, as the CLI exports them for Dagster."""
    for name in ("BATCH_ADMIN_POSTGRES_URL", "BATCH_ADMIN_CONTROL_URL", "BATCH_ADMIN_IO_BASE", "BATCH_ADMIN_ACTOR", "BATCH_ADMIN_KEY",
                 "BATCH_ADMIN_EXECUTOR", "BATCH_ADMIN_CELERY_BROKER",
                 "BATCH_ADMIN_ALERT_WEBHOOK", "BATCH_ADMIN_ROLES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BATCH_ADMIN_HOME", str(path))
    for name, value in Settings.from_env().environment().items():
        monkeypatch.setenv(name, value)


def _postgres_or_skip() -> None:
    import psycopg2

    try:
        psycopg2.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI but {POSTGRES_ADMIN_URL} is unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {POSTGRES_ADMIN_URL} is unreachable: {exc}".strip())


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the real server, dropped afterwards."""
    _postgres_or_skip()
    with throwaway_database(POSTGRES_ADMIN_URL, "ba_test") as url:
        yield url


@contextmanager
def throwaway_database(admin_url: str, prefix: str) -> Iterator[str]:
    """CREATE a database with a random name on the server of admin_url; DROP it afterwards."""
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(admin_url, connect_timeout=3)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
def control_url(request, tmp_path) -> Iterator[str]:
    """The control store on each backend: SQLite in a temp folder, and the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'control.db'}"
    else:
        request.applymarker(pytest.mark.postgres)
        yield request.getfixturevalue("postgres_url")
