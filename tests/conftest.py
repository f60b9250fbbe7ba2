"""Fixtures shared by the whole suite: an isolated home folder and the real PostgreSQL."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from assets.partitions import monthly_partitions
from batch_cli.main import main
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
                 "BATCH_ADMIN_ALERT_WEBHOOK", "BATCH_ADMIN_ROLES", "BATCH_ADMIN_LEASE_STALE_S"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BATCH_ADMIN_HOME", str(path))
    for name, value in Settings.from_env().environment().items():
        monkeypatch.setenv(name, value)


@dataclass(frozen=True)
class Materialized:
    """A home whose month has landed demo data and one run (version 1), and that run's JSON outcome."""

    home: Path
    month: str
    run: dict


NEXT_MONTH = monthly_partitions.get_partition_keys()[-1]


@pytest.fixture(scope="session")
def _materialized_template(tmp_path_factory) -> Materialized:
    """Next month landed (400 requests, 40 resources, seed 3), time_limit_s=2, run once by alice: built
    once per `pytest` run, as the tests that read it used to build it each. The xdist workers share it
    (the first to need it builds it, under a file lock, in their common temporary folder): a build is
    ~16 s of a core. Tests read copies of it only."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's folder, holding each worker's own
    folder = shared / "materialized"
    folder.mkdir(exist_ok=True)
    path, outcome = folder / "home", folder / "run.json"
    with (folder / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not outcome.exists():
            shutil.rmtree(path, ignore_errors=True)  # what a build that failed in another worker left
            path.mkdir()
            with pytest.MonkeyPatch.context() as mp:
                use_home(mp, path)
                for args in (("demo-data", NEXT_MONTH, "--requests", "400", "--resources", "40", "--seed", "3"),
                             ("params", NEXT_MONTH, "--actor", "alice", "--set", "time_limit_s=2"),
                             ("run", NEXT_MONTH, "--actor", "alice", "--json")):
                    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
                    assert result.exit_code == 0, result.output + result.stderr
            outcome.write_text(result.stdout)
    return Materialized(home=path, month=NEXT_MONTH, run=json.loads(outcome.read_text()))


@pytest.fixture
def materialized_month(_materialized_template, tmp_path, monkeypatch) -> Materialized:
    """A copy of the materialized month's home, the settings pointing at it: the test may change it."""
    path = tmp_path / "home"
    shutil.copytree(_materialized_template.home, path, symlinks=True)
    use_home(monkeypatch, path)
    return Materialized(home=path, month=_materialized_template.month, run=_materialized_template.run)


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


# `make test` runs the suite on pytest-xdist workers (-n auto --dist loadgroup): a test goes to any worker
# unless it shares something with others, then its group goes to one worker, in one piece.
# (A session-scoped fixture is built once per worker whatever the grouping.)
SHARED_SCOPES = ("module", "package")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Group the tests that must run in one worker: the Celery tests (one RabbitMQ, and each starts a
    deployment of several worker processes: two at once would overload 2 cores past their startup
    timeouts), and those of a module sharing a module-scoped fixture (built once, not once per worker).
    Then the long work first (_long_first)."""
    for item in items:
        if "celery" in item.path.relative_to(config.rootpath).parts[1:-1]:
            _join(config, item, "rabbitmq")
        elif _shares_a_fixture(item):
            _join(config, item, item.path.relative_to(config.rootpath).as_posix())
    _long_first(items)


def _join(config, item, group: str) -> None:
    """Mark the test with its xdist group and, on an xdist worker of `--dist loadgroup`, give it the id that
    xdist's scheduler groups by ("<id>@<group>"). xdist 3.8 writes that id into `item._nodeid`, which pytest
    9.2 no longer reads (its ids are `item._id`, a NodeId): without this every group was split across the
    workers, and each worker built the group's module fixtures (Dagster services, homes) again."""
    item.add_marker(pytest.mark.xdist_group(group))
    if getattr(config.option, "loadgroup", False):  # set on xdist workers only
        item._id = type(item._id).parse(f"{item.nodeid}@{group}")


def _group(item) -> str | None:
    mark = item.get_closest_marker("xdist_group")
    return mark.args[0] if mark is not None else None


def _long_first(items) -> None:
    """Order the run so that the two workers finish together: the xdist scheduler hands out work in this
    order (`make test` turns off its reordering by group size), one group or test at a time to the first
    worker free, so a long one handed out last keeps one worker busy while the other idles. First the groups
    holding a test marked slow (the Celery group, ~10 minutes, before all), then the tests marked slow, then
    the rest; within a group (a module's shared fixture) the file's order is kept."""
    slow_groups = {_group(item) for item in items if item.get_closest_marker("slow")} - {None}

    def rank(item) -> int:
        group = _group(item)
        if group == "rabbitmq":
            return 0
        if group in slow_groups:
            return 1
        return 2 if group is None and item.get_closest_marker("slow") else 3

    items.sort(key=rank)  # stable: the order of collection within each rank


def _shares_a_fixture(item) -> bool:
    """True when the test uses a module- or package-scoped fixture."""
    definitions = getattr(item, "_fixtureinfo", None)
    if definitions is None:
        return False
    return any(fixture.scope in SHARED_SCOPES and fixture.baseid
               for name in item.fixturenames for fixture in definitions.name2fixturedefs.get(name, ()))
