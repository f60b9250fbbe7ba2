"""Test hook: a crash at a named point, as `kill -9` would cause it (BATCH_ADMIN_TEST_CRASH_AT).

Only tests set the variable; it lets them prove that what a crash leaves half done is completed or
rolled back by `batch-admin repair` and detected by `status` and `audit --verify`.
"""

from __future__ import annotations

import os
import signal

from batch.names import CRASH_VAR

# version_write: data written, manifest not; final_copy: official copy staged, not published;
# final_commit: official copy published, final lock not committed.
POINTS = ("version_write", "final_copy", "final_commit")


def crash_point(name: str) -> None:
    """SIGKILL this process when the test hook names this point."""
    if os.environ.get(CRASH_VAR) == name:
        os.kill(os.getpid(), signal.SIGKILL)
