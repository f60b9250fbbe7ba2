"""Where an export may be written: never inside the home folder, onto special files, through
symbolic links, or over an existing file without --force; always atomically."""

from __future__ import annotations

import os

import pytest

from resources.storage import ExportError
from tests.resources.builders import MONTH, allocation_rows, caller_manifest


@pytest.fixture
def month(store):
    store.write_version(MONTH, 1, allocation_rows([("r1", "A"), ("r2", None)]), caller_manifest())
    return store


def hashes(folder) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("inside", ["control.db", "exports/allocations/month=2025-03/version=1/allocations.parquet",
                                    "exports/new.csv", "."])
def test_nothing_is_written_inside_the_home_folder(month, inside):
    before = hashes(month.home)
    with pytest.raises(ExportError, match="inside the home folder"):
        month.export(MONTH, fmt="csv", out=month.home / inside, force=True)
    assert hashes(month.home) == before


def test_an_existing_file_is_replaced_only_with_force(month, tmp_path):
    target = tmp_path / "review.csv"
    target.write_text("keep me")
    with pytest.raises(ExportError, match="already exists; give --force"):
        month.export(MONTH, fmt="csv", out=target)
    assert target.read_text() == "keep me"
    month.export(MONTH, fmt="csv", out=target, force=True)
    assert target.read_text().startswith("month,") and not list(tmp_path.glob(".review.csv.tmp-*"))


def test_a_symbolic_link_is_not_written_through(month, tmp_path):
    real = tmp_path / "real.csv"
    real.write_text("real")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    with pytest.raises(ExportError, match="symbolic link"):
        month.export(MONTH, fmt="csv", out=link, force=True)
    assert real.read_text() == "real" and link.is_symlink()


@pytest.mark.parametrize("target", ["/dev/null", "folder"])
def test_a_device_or_a_folder_is_refused(month, tmp_path, target):
    path = tmp_path / target if target == "folder" else target
    if target == "folder":
        os.mkdir(path)
    with pytest.raises(ExportError, match="not a regular file"):
        month.export(MONTH, fmt="csv", out=path, force=True)


@pytest.mark.parametrize("target", ["", "   "])
def test_an_empty_target_is_one_sentence(month, target):
    with pytest.raises(ExportError, match="--out needs a file name"):
        month.export(MONTH, fmt="csv", out=target)


def test_an_unwritable_place_is_one_sentence(month):
    with pytest.raises(ExportError, match="Cannot (create|write)"):
        month.export(MONTH, fmt="csv", out="/proc/batch-admin/x.csv")
