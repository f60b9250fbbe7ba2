"""Hostile arguments and a hostile environment, as a user meets them: `batch-admin` in a subprocess.

Every failure is one sentence on stderr and a non-zero exit, never a traceback (--debug shows it):
exit 1 when the product refuses, 2 for a malformed command line or a failure it could not get past (a
full disk, permissions, a damaged or unreachable store). What existed before a failure is unchanged.

The full-disk tests mount small tmpfs file systems (root or CAP_SYS_ADMIN); where mounting is not allowed
they are skipped, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from batch.months import planned_months
from resources.storage import ExportStore
from tests.resources.builders import MONTH, allocation_rows, caller_manifest

BIN = Path(sys.executable).parent / "batch-admin"
PLANNED = planned_months()[-1]  # next month: a partition, so plan/run/lock/params accept it
TIMEOUT_S = 300


def cli(home: Path, *args: str, env: dict[str, str] | None = None,
        wrap: list[str] | None = None) -> subprocess.CompletedProcess:
    """`batch-admin ARGS` with BATCH_ADMIN_HOME=home and nothing else of the product's settings."""
    environ = {name: value for name, value in os.environ.items()
               if not name.startswith("BATCH_ADMIN_") and name != "DAGSTER_HOME"}
    environ.update({"BATCH_ADMIN_HOME": str(home), **(env or {})})
    return subprocess.run([*(wrap or []), str(BIN), *args], env=environ, capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def one_sentence(result: subprocess.CompletedProcess, code: int, phrase: str) -> str:
    """The failure's one line on stderr (asserted), which holds `phrase`."""
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert phrase in lines[0], lines[0]
    return lines[0]


def contents(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


# ------------------------------------------------------------------ hostile arguments

EXPORT = ("export", MONTH, "--actor", "alice", "--format", "csv")
HOSTILE = [
    (("demo-data", "9999-12"), 1, "outside the months data can be held for"),
    (("demo-data", "0000-01"), 1, "outside the months data can be held for"),
    (("demo-data", "2026-13"), 1, "must look like YYYY-MM"),
    (("demo-data", PLANNED, "--seed", "-1"), 2, "'--seed'"),
    (("demo-data", PLANNED, "--seed", str(2**64)), 2, "'--seed'"),
    (("demo-data", PLANNED, "--requests", "0"), 2, "'--requests'"),
    (("demo-data", PLANNED, "--requests", "1000000000"), 2, "'--requests'"),
    (("demo-data", PLANNED, "--resources", "-5"), 2, "'--resources'"),
    (("status", "99999-01"), 1, "must look like YYYY-MM"),
    (("audit", "2026-13"), 1, "must look like YYYY-MM"),
    (("alerts", "last-month"), 1, "must look like YYYY-MM"),
    (("requests", "2026-00"), 1, "must look like YYYY-MM"),
    ((*EXPORT, "--out", ""), 1, "--out needs a file name"),
    ((*EXPORT, "--out", "/proc/batch-admin/x.csv"), 1, "Cannot"),
    ((*EXPORT, "--out", "/dev/null", "--force"), 1, "not a regular file"),
    ((*EXPORT, "--out", "{home}/control.db", "--force"), 1, "inside the home folder"),
    ((*EXPORT, "--out", "{tmp}", "--force"), 1, "not a regular file"),
    ((*EXPORT, "--out", "{tmp}/x.csv", "--version", "0"), 1, "not a positive integer"),
    ((*EXPORT, "--out", "{tmp}/x.csv", "--version", str(10**30)), 1, "does not exist"),
    (("export", MONTH, "--actor", "alice", "--format", "pdf", "--out", "{tmp}/x.pdf"), 2, "'--format'"),
    (("report", MONTH, "--out", ""), 1, "--out needs a file name"),
    (("report", MONTH, "--out", "{home}/control.db"), 1, "inside the home folder"),
    (("report", MONTH, "--out", "/dev/null", "--force"), 1, "not a regular file"),
    (("report", MONTH, "--out", "{tmp}/existing.html"), 1, "already exists; give --force"),
    (("diff", MONTH, "--from", "-1", "--to", "1"), 1, "not a positive integer"),
    (("lock", PLANNED, "--actor", "alice", "--admins", "alice", "--ttl", "nan"), 1, "time to live"),
    (("lock", PLANNED, "--actor", "alice", "--admins", "alice", "--ttl", "1e9"), 1, "time to live"),
    (("ticket", PLANNED, "--job", "execute_job", "--actor", "alice", "--minutes", "0"), 2, "'--minutes'"),
    (("params", PLANNED, "--actor", "alice", "--set", "time_limit_s=1e309"), 1, "between"),
    (("ui", "--port", "70000"), 2, "'--port'"),
    (("worker", "--concurrency", "100000"), 2, "'--concurrency'"),
    (("keygen", "../evil"), 1, "A name is"),
    (("--bogus", "status"), 2, "No such option"),
    (("statuss",), 2, "No such command"),
]


@pytest.fixture
def versioned(home: Path) -> Path:
    """A home holding version 1 of MONTH (written by the export store: no run needed)."""
    ExportStore(home).write_version(MONTH, 1, allocation_rows([("r1", "A"), ("r2", None)]), caller_manifest())
    return home


@pytest.mark.parametrize(("args", "code", "phrase"), HOSTILE, ids=[" ".join(a).replace("/", "|") for a, _, _ in HOSTILE])
def test_a_hostile_argument_is_one_sentence_and_a_non_zero_exit(versioned, tmp_path, args, code, phrase):
    (tmp_path / "existing.html").write_text("keep me")
    before = contents(versioned)
    args = tuple(a.format(home=versioned, tmp=tmp_path) for a in args)
    one_sentence(cli(versioned, *args), code, phrase)
    assert (tmp_path / "existing.html").read_text() == "keep me"
    after = contents(versioned)
    assert {name: after.get(name) for name in before} == before


# ------------------------------------------------------------------ a hostile environment

def test_a_home_that_is_a_file_is_named(tmp_path):
    home = tmp_path / "home"
    home.write_text("not a folder")
    for args in (("status",), ("demo-data", PLANNED, "--requests", "20", "--resources", "5")):
        one_sentence(cli(home, *args), 2, f"BATCH_ADMIN_HOME {home} is a file, not a folder")
    assert home.read_text() == "not a folder"


def test_a_damaged_control_store_is_named_and_left_alone_and_debug_shows_the_traceback(home):
    damaged = home / "control.db"
    damaged.write_bytes(b"this is not a SQLite database\n" * 100)
    for args in (("status",), ("audit", "--verify"), ("params", PLANNED, "--actor", "alice", "--set", "seed=1")):
        one_sentence(cli(home, *args), 2, f"The control store {damaged} is damaged")
    for debug in (cli(home, "--debug", "status"), cli(home, "status", env={"BATCH_ADMIN_DEBUG": "1"})):
        assert debug.returncode == 2
        assert "Traceback (most recent call last)" in debug.stderr
        assert debug.stderr.strip().splitlines()[-1].startswith(f"error: The control store {damaged} is damaged")
    assert damaged.read_bytes() == b"this is not a SQLite database\n" * 100


def test_an_unreachable_postgresql_is_named_without_its_password(tmp_path):
    url = "postgresql://batch:hunter2@127.0.0.1:1/batch_admin"
    for args in (("status",), ("migrate",)):
        line = one_sentence(cli(tmp_path / "home", *args, env={"BATCH_ADMIN_POSTGRES_URL": url}), 2,
                            "PostgreSQL at 127.0.0.1:1 is unreachable")
        assert "hunter2" not in line


def test_a_home_without_permission_is_named(tmp_path):
    home = tmp_path / "home"
    ok(cli(home, "demo-data", PLANNED, "--requests", "20", "--resources", "5"))
    # root passes permission checks: drop that capability (setpriv) so the bits count as for anyone else.
    wrap = None
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: permissions cannot be denied to this process")
        wrap = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    home.chmod(0)
    try:
        one_sentence(cli(home, "status", wrap=wrap), 2, f"Permission denied on {home}")
        one_sentence(cli(home, "demo-data", PLANNED, "--requests", "20", "--resources", "5", wrap=wrap), 2,
                     "Permission denied")
    finally:
        home.chmod(0o755)


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Callable[[str], Path]]:
    """mount(size): a fresh tmpfs of that size (e.g. "4m"), unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
        point.mkdir()
        try:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point)],
                                  capture_output=True, text=True, timeout=30)
            problem = done.stderr.strip() if done.returncode else None
        except OSError as exc:  # no mount(8)
            problem = str(exc)
        if problem is not None:
            reason = f"cannot mount a tmpfs for the full-disk tests (needs root or CAP_SYS_ADMIN): {problem}"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=30)


def fill(disk: Path) -> Path:
    """Fill the file system of `disk` to the last byte; returns the filler file (delete it to free the space)."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as file:
        for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    file.write(b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    assert shutil.disk_usage(disk).free == 0
    return filler


def test_on_a_full_home_disk_every_command_says_so_in_one_sentence_and_destroys_nothing(small_disk):
    disk = small_disk("4m")
    home = disk / "home"
    ok(cli(home, "demo-data", PLANNED, "--requests", "50", "--resources", "10"))
    ok(cli(home, "params", PLANNED, "--actor", "alice", "--set", "time_limit_s=2"))
    assert "intact" in ok(cli(home, "audit", "--verify")).stdout  # the Dagster instance exists too
    before = contents(home)
    filler = fill(disk)

    other = planned_months()[-2]
    for args in (("status",), ("status", PLANNED), ("audit", "--verify"), ("audit", PLANNED), ("alerts",),
                 ("demo-data", PLANNED, "--requests", "60", "--resources", "10", "--seed", "1"),
                 ("demo-data", other, "--requests", "60", "--resources", "10"),
                 ("params", PLANNED, "--actor", "alice", "--set", "time_limit_s=3"),
                 ("lock", PLANNED, "--actor", "alice", "--admins", "alice"),
                 ("run", PLANNED, "--actor", "alice")):
        line = one_sentence(cli(home, *args), 2, "No space left on device")
        assert str(home) in line and "free space on that disk" in line

    filler.unlink()
    after = contents(home)
    assert {name: after.get(name) for name in before} == before  # byte for byte
    assert not (home / "landing" / other).exists()
    assert sorted(p.name for p in (home / "landing" / PLANNED).iterdir()) == [
        "availability.parquet", "requests.parquet", "resources.parquet"]
    # Nothing was half done: with space again the store is intact and holds what it held.
    assert "intact" in ok(cli(home, "audit", "--verify")).stdout
    assert json.loads(ok(cli(home, "status", PLANNED, "--json")).stdout)["params"]["time_limit_s"] == 2


def test_an_export_to_a_full_disk_is_one_sentence_and_keeps_the_file_it_would_replace(versioned, small_disk):
    disk = small_disk("1m")
    target, new = disk / "review.csv", disk / "new.parquet"
    target.write_bytes(b"keep me\n")
    filler = fill(disk)

    one_sentence(cli(versioned, *EXPORT, "--out", str(target), "--force"), 1, "No space left on device")
    one_sentence(cli(versioned, "export", MONTH, "--actor", "alice", "--format", "parquet", "--out", str(new)), 1,
                 "No space left on device")
    assert target.read_bytes() == b"keep me\n" and not new.exists()
    assert sorted(p.name for p in disk.iterdir()) == ["filler", "review.csv"]  # no temporary file left
    audit = json.loads(ok(cli(versioned, "audit", MONTH, "--json")).stdout)
    assert "export" not in [entry["action"] for entry in audit]  # no export is recorded that was not written

    filler.unlink()
    ok(cli(versioned, *EXPORT, "--out", str(target), "--force"))
    assert target.read_text().startswith("month,")


def test_a_read_only_home_is_named(small_disk):
    disk = small_disk("4m")
    home = disk / "home"
    ok(cli(home, "demo-data", PLANNED, "--requests", "20", "--resources", "5"))
    ok(cli(home, "status"))
    before = contents(home)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True, timeout=30)
    one_sentence(cli(home, "demo-data", PLANNED, "--requests", "20", "--resources", "5"), 2, "Read-only file system")
    one_sentence(cli(home, "params", PLANNED, "--actor", "alice", "--set", "seed=1"), 2, "read-only")
    assert contents(home) == before


# ------------------------------------------------------------------ refusals answer before heavy imports

# The libraries a refusal of a malformed month must not wait for (they take seconds to import). The solver's
# schema is light (the CLI imports it with the parameters); its engines are OR-Tools and numba.
HEAVY = ("dagster", "pandas", "pyarrow", "duckdb", "ortools", "numba", "great_expectations", "sqlalchemy")
PROBE = """
import sys
from batch_cli.main import main
try:
    main(sys.argv[1:], standalone_mode=True)
except SystemExit as exc:
    code = exc.code
print("EXIT", code, sorted(name for name in {heavy!r} if name in sys.modules))
"""


@pytest.mark.parametrize("args", [
    ("status", "2026-13"), ("run", "2026-13", "--actor", "alice"), ("plan", "2026-13", "--actor", "alice"),
    ("report", "2026-13"), ("diff", "2026-13", "--from", "1", "--to", "2"), ("audit", "2026-13"),
    ("params", "2026-13", "--actor", "alice", "--set", "time_limit_s=3"), ("alerts", "2026-13"),
    ("adjust", "2026-13", "--pin", "a=b", "--actor", "alice", "--note", "x"), ("repair", "2026-13"),
    ("whatif", "2026-13", "--capacity", "R1=+1"),
], ids=lambda args: args[0])
def test_a_malformed_month_is_refused_before_any_heavy_library_is_imported(tmp_path, args):
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True,
                          env={**os.environ, "BATCH_ADMIN_HOME": str(tmp_path / "home")}, timeout=TIMEOUT_S)
    assert "must look like YYYY-MM" in done.stderr, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "EXIT 1 []", done.stdout
