"""Files written on request outside the home (exports) through directory file descriptors.

A path is resolved once, but the folders on it can be swapped for symbolic links at any time by
whoever may write them. So the target's folder is opened component by component from the root with
`O_DIRECTORY | O_NOFOLLOW` (a component swapped for a link fails to open), each folder opened is
compared by device and inode with the home and the folders the product keeps, and the temporary
file is created and renamed over the target relative to that folder's descriptor: whatever is
swapped afterwards, the bytes land in the folder that was checked.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeTarget(Exception):
    """A target that is, or became, a place the product keeps or a path through a link; str() says which."""


def identity(path: Path) -> tuple[int, int] | None:
    """The (device, inode) of an existing path (None when there is none)."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


@contextmanager
def open_folder(folder: Path, kept: dict[tuple[int, int], str]) -> Iterator[int]:
    """A descriptor of `folder` (absolute), opened from the root without following any link, none of
    whose folders is one of `kept` (device and inode -> what it is)."""
    fd = os.open("/", DIR_FLAGS)
    try:
        for part in ("", *folder.parts[1:]):
            if part:
                try:
                    opened = os.open(part, DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise UnsafeTarget(f"{folder} cannot be opened as a real folder ({exc.strerror}): a part of it "
                                       f"is a symbolic link, or was swapped for one") from None
                os.close(fd)
                fd = opened
            here = os.fstat(fd)
            what = kept.get((here.st_dev, here.st_ino))
            if what is not None:
                raise UnsafeTarget(f"{folder} is inside {what}")
        yield fd
    finally:
        os.close(fd)


def write_in(dir_fd: int, name: str, write: Callable[[BinaryIO], None], force: bool,
             kept_files: Iterable[tuple[int, int]] = ()) -> None:
    """Write `name` in the folder `dir_fd` through a temporary file renamed over it; an existing
    target must be a regular file (replaced only with `force`) and none of `kept_files`."""
    tmp = f".{name}.tmp-{uuid.uuid4().hex[:8]}"
    fd = os.open(tmp, FILE_FLAGS, 0o644, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            there = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            there = None
        if there is not None:
            if not stat.S_ISREG(there.st_mode):
                raise UnsafeTarget(f"{name} is, or became, something else than a regular file")
            if not force:
                raise FileExistsError(name)
            if (there.st_dev, there.st_ino) in set(kept_files):
                raise UnsafeTarget(f"{name} is a file the product keeps")
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise
    os.fsync(dir_fd)


def kept_places(home: Path, protected: Iterable[Path]) -> tuple[dict[tuple[int, int], str], set[tuple[int, int]]]:
    """The folders (by device and inode, with what they are) and files no export may write into or over."""
    folders: dict[tuple[int, int], str] = {}
    files: set[tuple[int, int]] = set()
    for path, what in ((Path(home), f"the home folder {home}"), *((Path(p), str(p)) for p in protected)):
        found = identity(path.expanduser())
        if found is None:
            continue
        if path.expanduser().is_dir():
            folders[found] = what
        else:
            files.add(found)
    return folders, files


def write_export(home: Path, protected: Iterable[Path], out: Path, write: Callable[[BinaryIO], None],
                 force: bool) -> None:
    """Write the checked target `out` (storage.check_target) through its folder's descriptor; every
    refusal or failure is an UnsafeTarget saying it in one sentence."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnsafeTarget(f"Cannot create the folder {out.parent} for the export: {exc.strerror or exc}.") from None
    folders, files = kept_places(home, protected)
    try:
        with open_folder(Path(os.path.realpath(out.parent)), folders) as dir_fd:
            write_in(dir_fd, out.name, write, force, files)
    except FileExistsError:
        raise UnsafeTarget(f"{out} already exists; give --force to replace it.") from None
    except UnsafeTarget as exc:
        raise UnsafeTarget(f"Refused to write {out}: {exc}; nothing was written.") from None
    except OSError as exc:
        raise UnsafeTarget(f"Cannot write the export to {out}: {exc.strerror or exc}.") from None
