"""The embedded default's event log keeps a connection per shard: same files as Dagster's default, one
connection per process (never a parent's after a fork), a bounded number of them, safe across threads,
live watches of a run written by another process, and committed events that survive a crashed writer."""

from __future__ import annotations

import functools
import operator
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as db
import yaml
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from engine.event_log import KEPT_SHARDS, KeptSqliteEventLogStorage, KeptSqliteStorage, event_log_dir
from engine.instance import BatchInstance
from engine.internals import InstanceRef, SqliteEventLogStorage

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 30  # a generous bound for a watch to see an event (a missed one never arrives)


def message(run_id: str, text: str) -> dg.EventLogEntry:
    return dg.EventLogEntry(error_info=None, level=20, user_message=text, run_id=run_id, timestamp=time.time())


def messages(storage: KeptSqliteEventLogStorage, run_id: str) -> list[str]:
    return [record.event_log_entry.user_message for record in storage.get_records_for_run(run_id).records]


def open_files(folder: Path) -> set[str]:
    """The files under `folder` this process has open (its SQLite connections' database and WAL files)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.add(os.path.basename(target))
    return found


@pytest.fixture
def connects():
    """The number of DBAPI connections SQLAlchemy opened while the test ran."""
    opened = []

    def count(*_args):
        opened.append(1)

    db.event.listen(db.engine.Engine, "connect", count)
    yield opened
    db.event.remove(db.engine.Engine, "connect", count)


def embedded_home(tmp_path: Path, with_engine: bool = True) -> Path:
    home = tmp_path / "dagster"
    home.mkdir()
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    if not with_engine:
        config = {name: value for name, value in config.items()
                  if not (isinstance(value, dict) and str(value.get("module", "")).startswith("engine."))}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


@dg.op
def one() -> int:
    return 1


@dg.job
def tiny() -> None:
    one()


def test_the_embedded_default_keeps_dagsters_files_and_a_home_keeps_its_history(tmp_path):
    home = embedded_home(tmp_path, with_engine=False)
    with dg.DagsterInstance.from_config(str(home)) as plain:  # a home made before: Dagster's own storage
        before = tiny.execute_in_process(instance=plain).run_id
    (home / "dagster.yaml").unlink()
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance, BatchInstance)
        assert isinstance(instance.event_log_storage, KeptSqliteEventLogStorage)
        run = instance.get_run_by_id(before)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert dg.DagsterEventType.RUN_SUCCESS in {event.dagster_event_type for event in instance.all_logs(before)}
        after = tiny.execute_in_process(instance=instance).run_id
    assert event_log_dir(str(home)) == str(home / "history" / "runs") + os.sep
    assert {f"{before}.db", f"{after}.db", "index.db"} <= set(os.listdir(home / "history" / "runs"))


def test_postgres_mode_names_its_own_storage():
    postgres = yaml.safe_load((ROOT / "deploy" / "postgres" / "dagster.yaml").read_text())
    assert postgres["storage"] == {"postgres": {"postgres_url": {"env": "BATCH_ADMIN_POSTGRES_URL"}}}
    defaults = BatchInstance.config_defaults("/home")
    assert (defaults["storage"].module_name, defaults["storage"].class_name) == ("engine.event_log", KeptSqliteStorage.__name__)
    # everything else is Dagster's default
    dagster_defaults = InstanceRef.config_defaults("/home")
    assert {key: value for key, value in defaults.items() if key not in ("storage", "event_log_storage")} == {
        key: value for key, value in dagster_defaults.items() if key not in ("storage", "event_log_storage")}


def test_a_run_shard_is_one_connection_for_many_events(tmp_path, connects):
    storage = KeptSqliteEventLogStorage(str(tmp_path))
    connects.clear()  # the index shard's creation
    run_id = str(uuid.uuid4())
    for number in range(30):
        storage.store_event(message(run_id, f"event {number}"))
    assert messages(storage, run_id) == [f"event {number}" for number in range(30)]
    assert len(connects) == 1
    storage.dispose()
    assert open_files(tmp_path) == set()


def test_at_most_a_few_shards_keep_a_connection(tmp_path):
    storage = KeptSqliteEventLogStorage(str(tmp_path))
    runs = [str(uuid.uuid4()) for _ in range(KEPT_SHARDS + 3)]
    for run_id in runs:
        storage.store_event(message(run_id, "hello"))
    still_open = {name.split(".")[0] for name in open_files(tmp_path)}
    assert still_open == set(runs[-KEPT_SHARDS:])  # the least recently used are closed
    assert all(messages(storage, run_id) == ["hello"] for run_id in runs)  # and reopened on use
    storage.dispose()


def test_threads_share_the_connections_one_at_a_time(tmp_path):
    storage = KeptSqliteEventLogStorage(str(tmp_path))
    run_id = str(uuid.uuid4())
    errors: list[BaseException] = []

    def write(thread: int) -> None:
        try:
            for number in range(25):
                storage.store_event(message(run_id, f"{thread}-{number}"))
                messages(storage, run_id)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(thread,)) for thread in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(messages(storage, run_id)) == sorted(f"{t}-{n}" for t in range(4) for n in range(25))
    storage.dispose()


def test_a_forked_process_makes_its_own_connections_and_leaves_the_parents_alone(tmp_path):
    storage = KeptSqliteEventLogStorage(str(tmp_path))
    run_id = str(uuid.uuid4())
    storage.store_event(message(run_id, "parent before"))
    parent_engine = storage._kept[run_id]  # noqa: SLF001  (which engine, not what it does)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: writes through the same storage object, then disposes it and exits
        code = 1
        try:
            os.close(reader)
            storage.store_event(message(run_id, "child"))
            fresh = storage._kept[run_id] is not parent_engine  # noqa: SLF001
            storage.dispose()
            del parent_engine
            import gc

            gc.collect()  # a collected parent's connection would close it in the child
            os.write(writer, b"fresh" if fresh else b"reused")
            code = 0
        finally:
            os._exit(code)
    os.close(writer)
    answer = os.read(reader, 16)
    _, status = os.waitpid(pid, 0)
    assert status == 0 and answer == b"fresh"
    assert storage._kept[run_id] is parent_engine  # noqa: SLF001
    storage.store_event(message(run_id, "parent after"))
    assert messages(storage, run_id) == ["parent before", "child", "parent after"]
    storage.dispose()


def test_a_shard_made_before_is_opened_without_alembics_scripts_and_a_new_one_is_made_as_dagster_makes_it(
        tmp_path, monkeypatch):
    run_id = str(uuid.uuid4())
    KeptSqliteEventLogStorage(str(tmp_path)).store_event(message(run_id, "first"))
    loads: list[str] = []
    real = ScriptDirectory.from_config

    def counted(config, *args, **kwargs):
        loads.append("scripts")
        return real(config, *args, **kwargs)

    monkeypatch.setattr(ScriptDirectory, "from_config", counted)
    again = KeptSqliteEventLogStorage(str(tmp_path))  # another process's storage, say
    again.store_event(message(run_id, "second"))
    assert loads == [] and messages(again, run_id) == ["first", "second"]
    fresh = str(uuid.uuid4())
    again.store_event(message(fresh, "new shard"))
    assert loads  # Dagster's _initdb: the schema created and stamped at alembic's head
    dagsters = SqliteEventLogStorage(str(tmp_path / "dagster"))
    dagsters.store_event(message(fresh, "new shard"))
    with again.run_connection(fresh) as ours, dagsters.run_connection(fresh) as theirs:
        assert MigrationContext.configure(ours).get_current_revision() == MigrationContext.configure(
            theirs).get_current_revision() is not None
    again.dispose()


def test_wipe_closes_the_connections_and_the_storage_goes_on(tmp_path):
    storage = KeptSqliteEventLogStorage(str(tmp_path))
    run_id = str(uuid.uuid4())
    storage.store_event(message(run_id, "before"))
    storage.wipe()
    assert not (tmp_path / f"{run_id}.db").exists()
    storage.store_event(message(run_id, "after"))
    assert messages(storage, run_id) == ["after"]
    storage.dispose()


WRITER = textwrap.dedent("""
    import sys, time
    import dagster as dg
    from engine.event_log import KeptSqliteEventLogStorage
    storage = KeptSqliteEventLogStorage(sys.argv[1])
    for line in sys.stdin:
        storage.store_event(dg.EventLogEntry(error_info=None, level=20, user_message=line.strip(),
                                             run_id=sys.argv[2], timestamp=time.time()))
        print("stored", flush=True)
""")


def test_a_watch_sees_each_event_another_process_stores_while_it_keeps_its_connection(tmp_path):
    run_id = str(uuid.uuid4())
    reader = KeptSqliteEventLogStorage(str(tmp_path))
    reader.store_event(message(run_id, "first"))  # the run's shard exists, as when a run is watched
    reader.dispose()  # and its WAL is checkpointed: the .db file changes no more
    seen: list[str] = []
    arrived = threading.Condition()

    def callback(entry: dg.EventLogEntry, _cursor: str) -> None:
        with arrived:
            seen.append(entry.user_message)
            arrived.notify_all()

    reader.watch(run_id, None, callback)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), run_id], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        for number in range(5):
            assert writer.stdin and writer.stdout
            writer.stdin.write(f"event {number}\n")
            writer.stdin.flush()
            assert writer.stdout.readline() == "stored\n"
            with arrived:
                assert arrived.wait_for(functools.partial(operator.contains, seen, f"event {number}"), WAIT_S), seen
        # the writer keeps its connection (its commits are in the WAL); a watch reads from its cursor at each
        # change (none given: from the run's first event)
        assert (tmp_path / f"{run_id}.db-wal").exists()
        assert seen == ["first"] + [f"event {number}" for number in range(5)]
    finally:
        writer.stdin.close()  # type: ignore[union-attr]
        writer.wait(timeout=60)
        reader.dispose()


CRASHING_RUN = textwrap.dedent("""
    import os, sys
    import dagster as dg

    @dg.op
    def one():
        return 1

    @dg.job
    def tiny():
        one()

    instance = dg.DagsterInstance.from_config(sys.argv[1])
    result = tiny.execute_in_process(instance=instance)
    print(result.run_id, flush=True)
    os._exit(0)  # as the run workers end: nothing closed, nothing checkpointed
""")


def test_a_run_worker_that_exits_without_closing_leaves_its_last_events_committed(tmp_path):
    home = embedded_home(tmp_path)
    done = subprocess.run([sys.executable, "-c", CRASHING_RUN, str(home)], cwd=ROOT, capture_output=True, text=True,
                          check=True, timeout=300)
    run_id = done.stdout.split()[-1]
    shard = home / "history" / "runs" / f"{run_id}.db"
    assert Path(f"{shard}-wal").exists()  # the events are in the WAL, not checkpointed
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        kinds = [event.dagster_event_type for event in instance.all_logs(run_id)]
        assert kinds[-1] == dg.DagsterEventType.RUN_SUCCESS
        # and in the index shard's mirror of run status changes
        changes = instance.event_log_storage.fetch_run_status_changes(dg.DagsterEventType.RUN_SUCCESS, limit=10)
        assert run_id in {record.event_log_entry.run_id for record in changes.records}
        storage = instance.event_log_storage
        assert isinstance(storage, KeptSqliteEventLogStorage)
        with storage.run_connection(run_id) as conn:
            synchronous = conn.execute(db.text("PRAGMA synchronous")).scalar()
            journal = conn.execute(db.text("PRAGMA journal_mode")).scalar()
    assert (journal, synchronous) == ("wal", 2)  # SQLite's default (FULL): each commit's WAL is synced
