"""How a command fails: one sentence on stderr (exit 1 for the product's refusals, 2 for everything else),
never a traceback unless --debug; click's usage errors as one line too."""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn

import click

from batch.errors import ControlError
from batch.identity import IdentityError
from batch.months import MonthError
from batch.names import DEBUG_VAR
from batch.roles import RoleError
from batch_cli.context import settings
from batch_cli.output import err
from resources.settings import SettingsError

KNOWN_ERRORS = (ControlError, RoleError, MonthError, SettingsError, IdentityError)
# Refusals of the modules imported on demand: (module, class), caught once that module is loaded.
DEFERRED_ERRORS = (("batch.params", "ParamError"), ("batch_cli.runs", "RunError"), ("batch.inputs", "InputError"),
                   ("resources.storage", "ExportError"), ("batch.whatif", "WhatIfError"))


class CliError(Exception):
    """One clear sentence for stderr, with an optional block of details after it."""

    def __init__(self, message: str, details: str | None = None):
        super().__init__(message)
        self.details = details


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One sentence on stderr for every failure, never a traceback (unless --debug): the product's refusals
    exit with code 1, everything else (a full disk, a database out of reach, a bug) with code 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own: usage errors are one line too (BatchAdmin.invoke)
        except Exception as exc:
            _fail(exc)

    return wrapper


def _refusals() -> tuple[type[Exception], ...]:
    """The product's refusal types: those of the deferred modules loaded so far (the others raised nothing)."""
    loaded = tuple(getattr(sys.modules[module], name) for module, name in DEFERRED_ERRORS if module in sys.modules)
    return (CliError, *KNOWN_ERRORS, *loaded)


EXIT_REFUSED = 1  # the product refused: a rule, a value it checks, an export it cannot write
EXIT_FAILED = 2  # the command could not complete (disk, permissions, database, a bug); click's usage errors too
# Below this much free space a file system counts as full (SQLite then says only "disk I/O error").
FULL_BYTES = 1 << 20
# What to do about a failed system call, by errno.
OS_ADVICE = {
    errno.ENOSPC: "free space on that disk and run the command again",
    errno.EDQUOT: "free space within your disk quota and run the command again",
    errno.EACCES: "give the user running batch-admin access to it, or use another path",
    errno.EPERM: "give the user running batch-admin access to it, or use another path",
    errno.EROFS: "that file system is mounted read-only; use a writable path",
    errno.ENOENT: "check the path (and BATCH_ADMIN_HOME)",
    errno.ENOTDIR: "a file stands where a folder is expected; check the path (and BATCH_ADMIN_HOME)",
    errno.EEXIST: "a file stands where a folder is expected; check the path (and BATCH_ADMIN_HOME)",
    errno.EISDIR: "a folder stands where a file is expected; give a file path",
    errno.EIO: "the disk reported a hardware or file system error; check it before running the command again",
    errno.EMFILE: "too many files are open; raise the limit (ulimit -n) and run the command again",
    errno.ENFILE: "too many files are open on this host; run the command again later",
    errno.ENAMETOOLONG: "give a shorter path",
}


class BatchAdmin(click.Group):
    """The `batch-admin` group: a usage error is one line on stderr (exit 2, as click's), and a failure
    outside the commands' own handling is one sentence too."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            _fail(exc)


class _UsageLine(click.ClickException):
    exit_code = 2

    def show(self, file: Any = None) -> None:
        err.print(f"error: {self.message}", markup=False)


def _one_line_usage(exc: click.UsageError) -> click.ClickException:
    """Click's usage error as one line (its help still answers `--help`); `batch-admin` alone shows the help."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        return exc
    message = exc.format_message()
    message = message if message.endswith("?") else message.rstrip(".")
    where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
    return _UsageLine(f"{message}{where}.")


def _debug() -> bool:
    """--debug on the group, or BATCH_ADMIN_DEBUG=1."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.find_root().params.get("debug"):
        return True
    return os.environ.get(DEBUG_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def _fail(exc: Exception) -> NoReturn:
    """Print one sentence for `exc` (the traceback before it with --debug) and exit."""
    if _debug():
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, _refusals()):
        message = str(exc).strip()
        first, _, rest = message.partition("\n")
        err.print(f"error: {first}", markup=False)
        details = getattr(exc, "details", None) or rest
        if details:
            err.print(details.strip(), markup=False)
        sys.exit(EXIT_REFUSED)
    err.print(f"error: {explain_failure(exc)}", markup=False)
    sys.exit(EXIT_FAILED)


def explain_failure(exc: BaseException) -> str:
    """One sentence naming what failed and why: the innermost cause a user can act on (a system call,
    SQLite, PostgreSQL), else the exception's type and first line."""
    for cause in _causes(exc):
        sentence = _os_failure(cause) if isinstance(cause, OSError) else _database_failure(cause)
        if sentence:
            return sentence
    if isinstance(exc, MemoryError):
        return "out of memory; free memory (or ask for a smaller month) and run the command again."
    return f"unexpected error: {type(exc).__name__}: {_first_line(exc) or 'no message'}; run with --debug for the traceback."


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps (SQLAlchemy's .orig, __cause__, __context__), outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 20:
        chain.append(current)
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException) and orig not in chain:
            chain.append(orig)
        current = current.__cause__ or current.__context__
    return chain


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).strip().splitlines()[:1]).strip()
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _home() -> Path | None:
    try:
        return settings().home
    except Exception:  # the settings themselves may be what failed
        return None


def _os_failure(exc: OSError) -> str | None:
    code = exc.errno
    if code is None:  # pyarrow and others: "[Errno 28] …" in the message only
        found = re.search(r"\[errno (\d+)\]", str(exc), re.IGNORECASE)
        code = int(found.group(1)) if found else None
    if code is None or code == errno.EPIPE:
        return None
    reason = os.strerror(code)
    path = os.fsdecode(exc.filename) if isinstance(exc.filename, str | bytes | os.PathLike) else None
    home = _home()
    if code in (errno.EEXIST, errno.ENOTDIR) and home is not None and home.exists() and not home.is_dir():
        return f"BATCH_ADMIN_HOME {home} is a file, not a folder: point BATCH_ADMIN_HOME at a folder."
    if code in (errno.ENOSPC, errno.EDQUOT):
        if path is None:  # the system named no file: name the full disk among the usual places
            full = next((place for place in (home, Path(tempfile.gettempdir())) if place and _is_full(place)), None)
            path = f"under {full}" if full else "(no file named)"
        return f"{reason} while writing {path}: {OS_ADVICE[code]}."
    where = f" ({path})" if path is not None else ""
    advice = OS_ADVICE.get(code)
    if advice is None:
        return f"{reason}{where}; run with --debug for the traceback."
    return f"{reason}{where}: {advice}."


def _database_failure(exc: BaseException) -> str | None:
    """SQLite's and PostgreSQL's errors (the drivers' own, which SQLAlchemy wraps) as a sentence."""
    module = type(exc).__module__
    if module == "sqlite3":
        return _sqlite_failure(_first_line(exc))
    if module.startswith("psycopg2"):
        return _postgres_failure(exc)
    return None


def _sqlite_failure(message: str) -> str:
    """The embedded stores (control.db, the Dagster instance's SQLite files) live under the home folder: what
    keeps SQLite from using it, else SQLite's own words."""
    home = _home()
    url = _control_url()
    control = Path(url.split("sqlite:///", 1)[1]) if url and url.startswith("sqlite:///") else None
    where = f"under {home}" if home else "in BATCH_ADMIN_HOME"
    lowered = message.lower()
    if any(words in lowered for words in ("disk is full", "disk i/o error", "unable to open", "readonly")):
        problem = _folder_problem(home) if home else None
        if problem is None and control is not None and control.exists() and not os.access(control, os.R_OK | os.W_OK):
            problem = (f"Permission denied on {control}", "give the user running batch-admin read and write access to it")
        if problem:
            return f"{problem[0]} (SQLite: {message}): {problem[1]}."
    if "disk is full" in lowered:
        return f"SQLite found the disk full {where} ({message}): free space on that disk and run the command again."
    if "not a database" in lowered or "malformed" in lowered:
        which = (f"The control store {control}" if control and not _looks_like_sqlite(control)
                 else f"A SQLite database {where} (the control store or the Dagster instance)")
        return f"{which} is damaged ({message}): restore it from a backup (docs/deploy.md, Backups)."
    if "readonly database" in lowered:
        return f"A SQLite database {where} is read-only ({message}): give the user running batch-admin write access."
    if "database is locked" in lowered:
        return f"A SQLite database {where} stayed locked by another process ({message}): run the command again."
    return f"SQLite failed {where}: {message}; run with --debug for the traceback."


def _folder_problem(folder: Path) -> tuple[str, str] | None:
    """What keeps a program from writing in `folder`, and what to do about it; None if nothing visible."""
    if not folder.exists():
        return f"{folder} does not exist", "create it or correct BATCH_ADMIN_HOME"
    if not folder.is_dir():
        return f"BATCH_ADMIN_HOME {folder} is a file, not a folder", "point BATCH_ADMIN_HOME at a folder"
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        return f"{folder} is on a read-only file system", "remount it writable or point BATCH_ADMIN_HOME elsewhere"
    if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
        return f"Permission denied on {folder}", "give the user running batch-admin read and write access to it"
    if _is_full(folder):
        return f"No space left on device under {folder}", "free space on that disk and run the command again"
    return None


def _postgres_failure(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    found = re.search(r'connection to server (?:at "([^"]+)"(?: \([^)]*\))?, port (\d+)|on socket "([^"]+)") '
                      r'failed: (.*)', message)
    if found:
        where = f"{found.group(1)}:{found.group(2)}" if found.group(1) else found.group(3)
        reason = found.group(4).replace("FATAL: ", "").strip().rstrip(".")
        if "does not exist" in reason or "authentication" in reason or "password" in reason:
            return f"PostgreSQL at {where} refused the connection: {reason}; correct BATCH_ADMIN_POSTGRES_URL."
        return (f"PostgreSQL at {where} is unreachable ({reason.split(' Is the server')[0]}): start it or correct "
                f"BATCH_ADMIN_POSTGRES_URL, then run the command again.")
    if "no space left on device" in message.lower() or "could not extend file" in message.lower():
        return f"PostgreSQL's disk is full ({_first_line(exc)}): free space on the database server."
    return f"PostgreSQL failed: {_first_line(exc)}; run with --debug for the traceback."


def _control_url() -> str | None:
    try:
        return settings().control_url
    except Exception:
        return None


def _is_full(path: Path) -> bool:
    """Whether the file system holding `path` (or its nearest existing parent) has no room left."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free < FULL_BYTES
            except OSError:
                return False
    return False


def _looks_like_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(16) == b"SQLite format 3\x00"
    except OSError:
        return True  # not the damage this names


