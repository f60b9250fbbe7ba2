"""The embedded default's event log (SQLite): Dagster's, with one kept connection per shard.

Dagster 1.13's SqliteEventLogStorage makes a new SQLAlchemy engine and a new SQLite connection for every
statement it runs (its `_connect`), and closing the last connection of a WAL database checkpoints it: a run
of the demo month (~94 events, each to its run's shard and many to the index shard) paid ~436 connection
cycles and ~900 fsyncs, ~0.8 s CPU and seconds of wall on a busy disk. KeptSqliteEventLogStorage keeps
one engine and connection per shard for the life of the process; everything else (the files, the schema,
WAL mode, SQLite's default synchronous=FULL, Dagster's `_db_lock` around every use) is Dagster's:
- a committed event is in the WAL file, fsynced, when `store_event` returns, as before; a process that
  ends without closing (the run workers end with os._exit) leaves the WAL for the next reader;
- the connections are per process: a process forked after it used the storage (the warm workers'
  forkserver, a CLI's run worker, bench.step_times) opens its own and never touches, nor closes, its
  parent's (SQLite's rule: no connection across a fork);
- at most KEPT_SHARDS shards keep a connection (least recently used closed first): the webserver and
  the daemon touch the shard of every run they show or watch;
- Dagster's `_db_lock` keeps one thread at a time on the storage's connections, as it kept one at a time
  on its fresh ones (the sqlite3 module's same-thread check is off because of that lock);
- the webserver's live run view (Dagster's `watch`) still sees each event: its watchdog reacts to
  modifications of the run's `.db` file, which a kept WAL connection writes only at checkpoints, so a
  commit that wrote to a shard touches the shard's file (watch_signal).

The storage is the instance class's default (engine/instance.py BatchInstance.config_defaults), with
the same files as Dagster's default (`$DAGSTER_HOME/history/runs/*.db`): a home made before keeps its
history, and an instance without the engine reads the same files. PostgreSQL (deploy/postgres) names
its own storage and is not touched.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import sqlalchemy as db
import sqlalchemy.exc as db_exc
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from engine.internals import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    ConfigurableClassData,
    DagsterSqliteStorage,
    SqliteEventLogStorage,
)

# Shards whose connection a process keeps: a run worker uses two (its run's and the index); the webserver
# and the daemon one per run they look at, of which the recent few are looked at again.
KEPT_SHARDS = 8


def event_log_dir(base_dir: str) -> str:
    """The event log's folder of a SQLite storage under base_dir, where Dagster's default puts it
    (dagster/_core/storage/sqlite_storage.py, instance/ref.py: history/runs/)."""
    return os.path.join(base_dir, "history", "runs", "")


def watch_signal(path: str) -> None:
    """Touch a shard's `.db` file after a commit to it, for Dagster's watchdog of a run's events (the webserver's
    live run view), which reacts to modifications of that file: a kept WAL connection writes the `-wal` file and
    the `.db` file only at checkpoints. The WAL file itself is no signal to watch: its frames are written
    before the commit is visible to readers (a watcher woken by them may read too early and miss the event).
    A file this process may not touch (another user's) is left alone: its watchers see the next checkpoint."""
    with suppress(OSError):
        os.utime(path)


class KeptSqliteEventLogStorage(SqliteEventLogStorage):
    """SqliteEventLogStorage keeping one connection per shard (at most KEPT_SHARDS) in each process."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._kept: OrderedDict[str, Engine] = OrderedDict()
        self._kept_pid = os.getpid()
        # Connections of a parent process, inherited by a fork: kept referenced, so that the garbage collector
        # never closes them in the child (a close is a use: it may checkpoint a database the parent writes).
        self._inherited: list[Engine] = []
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any) -> KeptSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        """The shard's engine of this process (made on first use), most recently used last; the caller
        holds `_db_lock`."""
        if self._kept_pid != os.getpid():  # forked: the parent's connections are the parent's
            self._inherited.extend(self._kept.values())
            self._kept = OrderedDict()
            self._kept_pid = os.getpid()
        engine = self._kept.get(shard)
        if engine is not None:
            self._kept.move_to_end(shard)
            return engine
        engine = db.create_engine(self.conn_string_for_shard(shard), poolclass=StaticPool,
                                  connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False})
        if shard not in self._initialized_dbs:
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        self._kept[shard] = engine
        while len(self._kept) > KEPT_SHARDS:
            _, dropped = self._kept.popitem(last=False)
            dropped.dispose()
        return engine

    def _initdb(self, engine: Engine, for_index_shard: bool = False) -> None:
        """Dagster's first use of a shard in a process, which creates a missing shard and otherwise does
        nothing once the shard carries an alembic revision; that revision is read here first, since Dagster
        also loads alembic's ~90 migration scripts for the head revision (~0.1 s CPU) before deciding so:
        a run's shard is first used in the webserver, the daemon and its worker, the index in each worker."""
        with engine.connect() as conn:
            if MigrationContext.configure(conn).get_current_revision():
                return
        super()._initdb(engine, for_index_shard=for_index_shard)

    def _drop(self, shard: str) -> None:
        """Close the shard's connection (after an error of the database: the next use connects anew)."""
        engine = self._kept.pop(shard, None)
        if engine is not None:
            engine.dispose()

    def _close_kept(self) -> None:
        """Close this process's connections (the caller holds `_db_lock`)."""
        if self._kept_pid == os.getpid():
            while self._kept:
                self._kept.popitem()[1].dispose()

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        """Dagster's `_connect` (the lock, the first use's schema check, a transaction committed at the end),
        on the shard's kept connection."""
        with self._db_lock:
            engine = self._engine(shard)
            try:
                with engine.connect() as conn:
                    changes = conn.connection.dbapi_connection.total_changes  # type: ignore[union-attr]
                    with conn.begin():
                        yield conn
                    wrote = conn.connection.dbapi_connection.total_changes != changes  # type: ignore[union-attr]
            except db_exc.DBAPIError:
                self._drop(shard)
                raise
            if wrote:  # committed and visible: now tell the watchers of the shard's file (see watch_signal)
                watch_signal(self.path_for_shard(shard))

    def wipe(self) -> None:
        """Dagster's wipe deletes the run shards' files: their connections are closed first."""
        with self._db_lock:
            self._close_kept()
        super().wipe()

    def dispose(self) -> None:
        with self._db_lock:
            self._close_kept()
        super().dispose()


class KeptSqliteStorage(DagsterSqliteStorage):
    """Dagster's default SQLite storage (runs, event log, schedules under one base_dir), its event log kept
    per shard (KeptSqliteEventLogStorage over the same files)."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(base_dir, inst_data=inst_data)
        self._event_log_storage = KeptSqliteEventLogStorage(event_log_dir(base_dir))

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any) -> KeptSqliteStorage:
        return cls(inst_data=inst_data, **config_value)
