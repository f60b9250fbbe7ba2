"""The warm run workers' preload: the warm-up runs once at import and leaves nothing behind; when it
fails, the import (the forkserver's start) still succeeds and says why."""

import logging
import os
import subprocess
import sys

import pytest

PROBE = """
import logging, sys, threading
logging.basicConfig(level=logging.WARNING)
import engine.worker_preload
from solvers.greedy import _fill
print(len(_fill.signatures), threading.active_count(), sorted(m for m in ('alembic', 'tabulate') if m in sys.modules))
"""


def test_the_warm_up_loads_the_first_calls_and_leaves_no_thread_or_file(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path), "GX_ANALYTICS_ENABLED": "false"}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "warm-up failed" not in done.stderr
    signatures, threads, modules = done.stdout.split(maxsplit=2)
    assert int(signatures) >= 1  # the greedy's compiled code is loaded: forks call it without loading it
    assert int(threads) == 1  # nothing runs beside the main thread when the server starts forking
    assert "alembic" in modules and "tabulate" in modules  # opening the instance imports them otherwise
    assert list(tmp_path.iterdir()) == []  # the warm-up month's folder is gone


def test_a_failing_warm_up_is_logged_and_not_raised(monkeypatch, caplog):
    from engine import worker_preload  # its import warms up once, as in the forkserver

    def broken(*_args, **_kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as patched, caplog.at_level(logging.WARNING, logger=worker_preload.__name__):
        patched.setattr(worker_preload, "write_landing", broken)
        assert worker_preload.warm_up_or_warn() is False
    assert "The run workers' warm-up failed; runs start without it." in caplog.text
    assert "disk full" in caplog.text
    assert worker_preload.warm_up_or_warn() is True


@pytest.fixture(autouse=True)
def _no_usage_reports(monkeypatch):
    monkeypatch.setenv("GX_ANALYTICS_ENABLED", "false")
