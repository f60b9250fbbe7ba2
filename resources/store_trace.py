"""A diagnostic: every control-store transaction, one line each, appended to the file named by
BATCH_ADMIN_TRACE_TRANSACTIONS (the process, the store method or the function that opened a `unit`, and
who called it). Off unless set; tests/pipelines/test_run_transactions.py counts a run's transactions with it
(docs/performance.md, "Control-store transactions of a run").
"""

from __future__ import annotations

import os
import sys

from sqlalchemy import event
from sqlalchemy.engine import Engine

from batch.names import TRACE_VAR

# Frames that are plumbing, not the store method or its caller.
_PLUMBING = ("sqlalchemy", "contextlib", "resources.store_trace")


def trace_transactions(engine: Engine) -> None:
    """Record each transaction of this engine when BATCH_ADMIN_TRACE_TRANSACTIONS names a file."""
    path = os.environ.get(TRACE_VAR)
    if path:
        event.listen(engine, "begin", lambda _conn: _record(path))


def _record(path: str) -> None:
    frame = sys._getframe(1)
    names: list[str] = []
    while frame is not None and len(names) < 3:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(_PLUMBING) and frame.f_code.co_name not in ("write", "read", "unit", "__enter__"):
            names.append(f"{module}.{frame.f_code.co_name}")
        frame = frame.f_back  # type: ignore[assignment]
    line = f"{os.getpid()}\t" + "\t".join(names) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
