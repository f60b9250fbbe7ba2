"""A person who controls the folder an admin exports into cannot redirect the write into the home, and
a damaged official copy is never served (issue 25, break 5)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from resources.export_paths import DATA_FILE
from resources.safe_write import UnsafeTarget, write_export
from resources.storage import ExportError
from tests.resources.builders import MONTH, allocation_rows, caller_manifest


@pytest.fixture
def final(store):
    store.write_version(MONTH, 1, allocation_rows([("r1", "A"), ("r2", None)]), caller_manifest())
    store.write_final(MONTH, 1, {"finalized_by": "alice", "approved_by": "bob"})
    return store


def official(store) -> Path:
    return store.final_path(MONTH).resolve() / DATA_FILE


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_folder_swapped_for_a_link_into_the_home_while_an_export_runs_is_not_written_through(final, tmp_path):
    before = digest(official(final))
    target = tmp_path / "shared" / DATA_FILE
    target.parent.mkdir()

    def swap_then_write(handle) -> None:
        # The other user swaps the folder for a link to the official copy's folder mid-write.
        target.parent.rename(tmp_path / "checked")
        target.parent.symlink_to(official(final).parent)
        handle.write(b"not the official allocation")

    write_export(final.home, (), target, swap_then_write, force=True)
    assert digest(official(final)) == before and final.verify_final(MONTH)
    assert (tmp_path / "checked" / DATA_FILE).read_bytes() == b"not the official allocation"


def test_a_folder_that_already_leads_into_the_home_is_refused_by_device_and_inode(final, tmp_path):
    link = tmp_path / "shared"
    link.symlink_to(official(final).parent)
    with pytest.raises(UnsafeTarget, match="inside the home folder"):
        write_export(final.home, (), link / DATA_FILE, lambda handle: handle.write(b"x"), force=True)
    assert final.verify_final(MONTH)


def test_exports_racing_a_user_who_swaps_their_folder_never_touch_the_official_copy(final, tmp_path):
    before = digest(official(final))
    folder, parked = tmp_path / "shared", tmp_path / "parked"
    folder.mkdir()
    stop = threading.Event()

    def swapper() -> None:
        while not stop.is_set():
            folder.rename(parked)
            folder.symlink_to(official(final).parent)
            time.sleep(0.002)  # long enough for an export's write to fall in either state
            folder.unlink()
            parked.rename(folder)
            time.sleep(0.002)

    thread = threading.Thread(target=swapper)
    thread.start()
    try:
        outcomes = []
        for _ in range(150):
            try:
                final.export(MONTH, fmt="parquet", out=folder / DATA_FILE, force=True)
                outcomes.append("written")
            except ExportError as exc:
                outcomes.append(str(exc))
    finally:
        stop.set()
        thread.join()
    assert digest(official(final)) == before and final.verify_final(MONTH)
    assert sorted(os.listdir(official(final).parent)) == ["allocations.parquet", "manifest.json"]
    assert "written" in outcomes


def test_export_final_refuses_a_damaged_official_copy_naming_it(final, tmp_path):
    data = official(final)
    data.chmod(0o644)
    data.write_bytes(data.read_bytes()[:-8] + b"tampered")
    with pytest.raises(ExportError, match=f"official copy of {MONTH} at .*final/month={MONTH} fails its checksums"):
        final.export(MONTH, fmt="csv", out=tmp_path / "final.csv", final=True)
    assert not (tmp_path / "final.csv").exists()
