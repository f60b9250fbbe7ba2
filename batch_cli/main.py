"""The `batch-admin` command line: plan, run, review, finalize and export months."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from batch import actions
from batch.actions import FollowUp, Outcome
from batch.errors import ControlError
from batch.identity import (
    DEFAULT_TICKET_MINUTES,
    KEY_VAR,
    MAX_TICKET_MINUTES,
    TICKET_TAG,
    IdentityError,
    Signed,
    default_key_path,
    load_private_key,
    make_ticket,
    sign,
)
from batch.lifecycle import EXECUTE_JOB, PLAN_JOB
from batch.months import MonthError, check_month, check_planned_month
from batch.roles import ACTOR_TAG, NOTE_TAG, RoleError, Roles, actor_from
from batch.times import json_default, local
from batch_cli.advice import ADVICE_KEY, print_advice
from batch_cli.passkey import passkey_command
from batch_cli.status_view import print_settings
from batch_cli.whatif import whatif_command
from resources.execution import QUEUES
from resources.settings import DEFAULT_ROLES_FILE, Settings, SettingsError, view_origin

# Start-up speed: pandas, DuckDB, SQLAlchemy, matplotlib and Dagster take ~4 s to import together, so
# each command imports what it needs when it runs, and `--help` or a refusal answers without them.
if TYPE_CHECKING:
    from batch_cli.runs import RunEvents
    from resources.storage import ExportStore
    from resources.store_factory import Control

SOLVE_STEP = re.compile(r"^allocation_parts\.solve_part\[part_(\d+)\]$")
KNOWN_ERRORS = (ControlError, RoleError, MonthError, SettingsError, IdentityError)
# Refusals of the modules imported on demand: (module, class), caught once that module is loaded.
DEFERRED_ERRORS = (("batch.params", "ParamError"), ("batch_cli.runs", "RunError"), ("batch.inputs", "InputError"),
                   ("resources.storage", "ExportError"), ("batch.whatif", "WhatIfError"))

# Piped output (CI logs, files) gets wide tables instead of rich's 80-column default.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


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
DEBUG_VAR = "BATCH_ADMIN_DEBUG"
MAX_WORKER_CONCURRENCY = 256  # pool processes of one `batch-admin worker`
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


def write_file(path: Path, text: str, what: str) -> Path:
    """Write `text` to the --out file `path` through a temporary file renamed over it: a failed write (a full
    disk) leaves what was there, and is refused in one sentence like an export's (exit 1)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        advice = OS_ADVICE.get(exc.errno or 0)
        raise CliError(f"Cannot write the {what} to {path}: {exc.strerror or exc}"
                       f"{f'; {advice}' if advice else ''}.") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def settings() -> Settings:
    return Settings.from_env()


def exports() -> ExportStore:
    """The export store under the home folder."""
    from resources.storage import ExportStore  # deferred: start-up speed (see the imports)

    return ExportStore(settings().home, protected=protected_paths())


def protected_paths() -> tuple[Path, ...]:
    """The roles file, people's keys (the key folder and BATCH_ADMIN_KEY), and the stores outside the home."""
    keys = [default_key_path("x").parent]
    if os.environ.get(KEY_VAR):
        keys.append(Path(os.environ[KEY_VAR]))
    return settings().protected_paths(tuple(keys))


# The control stores this process opened: one engine per URL and roles file.
_STORES: dict[tuple[str, str], Control] = {}


def store() -> Control:
    """The control store: one engine for this process (per URL)."""
    current = settings()
    key = (current.control_url, str(current.roles_file))
    if key not in _STORES:
        from resources.store_factory import open_control_store  # deferred: start-up speed (see the imports)

        _STORES[key] = open_control_store(current)
    return _STORES[key]


def close_stores() -> None:
    """Close the connections of every control store this process opened (PostgreSQL then ends their
    sessions at once, rather than when it notices the process gone)."""
    while _STORES:
        _STORES.popitem()[1].dispose()


def signer(who: str) -> Any:
    """The acting person's private key: BATCH_ADMIN_KEY, ~/.config/batch-admin/NAME.key, or, for the
    embedded demo with the shipped roles file only, the demo key."""
    current = settings()
    demo = current.embedded and current.roles_file == DEFAULT_ROLES_FILE
    return load_private_key(who, os.environ.get(KEY_VAR) or None, demo=demo, embedded=current.embedded)


def request_ticket(who: str, request: Any) -> Signed | None:
    """The single run ticket that carries out a finalize or unlock request (None for other kinds)."""
    job = actions.ticket_job(request)
    if job is None:
        return None
    return make_ticket(signer(who), who, job, [str(request.month)], DEFAULT_TICKET_MINUTES, request_id=request.id)


def _follow(follows: FollowUp | None) -> str:
    """Submit and follow the run an action says follows, with its ticket."""
    assert follows is not None  # an approval, a repair or an admitted run names its run
    return _run_or_fail(follows.job, follows.month, follows.actor, follows.note, follows.run_config or None,
                        ticket=follows.ticket)


def sign_as(who: str, action: str, month: str | None, details: dict[str, Any] | None = None) -> Signed:
    """An action signed with the acting person's key; the control store verifies it."""
    return sign(signer(who), who, action, month, details)


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=json_default, sort_keys=True))
    else:
        human()


@contextmanager
def _progress(title: str) -> Iterator[RunEvents]:
    """Live view of a run on stderr: the current step, and one bar per solve part."""
    from batch_cli.runs import RunEvents  # deferred: start-up speed (see the imports)

    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                        console=err, transient=not err.is_terminal)
    overall = progress.add_task(title, total=None)
    parts: dict[int, Any] = {}

    def on_step(step: str, status: str) -> None:
        part = SOLVE_STEP.match(step)
        if part and status == "done" and int(part.group(1)) + 1 in parts:
            task = parts[int(part.group(1)) + 1]
            progress.update(task, completed=progress.tasks[task].total)
        # Step keys hold brackets (solve_part[part_0]) that rich would read as markup.
        progress.update(overall, description=escape(f"{title}: {step} {status}"))

    def on_part(index: int, count: int, done: float, total: float) -> None:
        if index not in parts:
            parts[index] = progress.add_task(f"  solve part {index}/{count} ({total:g} s limit)", total=total)
        progress.update(parts[index], completed=min(done, total))

    with progress:
        yield RunEvents(on_step=on_step, on_part=on_part,
                        on_notice=lambda text: err.print(f"note: {text}", markup=False))


def _run_or_fail(job: str, month: str | None, actor: str | None, note: str | None = None,
                 run_config: dict[str, Any] | None = None, ticket: Signed | None = None) -> str:
    """Run a job and follow it, with the run ticket given."""
    tags = {ACTOR_TAG: actor} if actor else {}
    if note:
        tags[NOTE_TAG] = note
    if ticket is not None:
        tags[TICKET_TAG] = ticket.encode()
    from batch_cli.runs import run_job  # deferred: start-up speed (see the imports)

    with _progress(f"{job}{f' for {month}' if month else ''}") as events:
        outcome = run_job(job, month, tags, run_config, events)
    notes = "\n".join(f"note: {note}" for note in outcome.notes) or None
    if not outcome.success:
        raise CliError(outcome.error or f"{job} failed (run {outcome.run_id}).", notes)
    if notes:
        err.print(notes, markup=False)
    return outcome.run_id


@click.group(cls=BatchAdmin, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, envvar=DEBUG_VAR,
              help=f"Show the traceback of a failure (also {DEBUG_VAR}=1); without it, one sentence.")
def main(debug: bool) -> None:
    """Control plane for the monthly allocation batch (state under BATCH_ADMIN_HOME).

    Exit codes: 0 done; 1 refused by the product's rules; 2 a malformed command line, or a failure
    the command could not get past (a full disk, permissions, a database out of reach, a bug)."""


@main.command("demo-data")
@click.argument("month")
@click.option("--requests", "n_requests", default=2000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--resources", "n_resources", default=120, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly
def demo_data(month: str, n_requests: int, n_resources: int, seed: int, as_json: bool) -> None:
    """Write a realistic, deterministic month of inputs into landing/YYYY-MM/."""
    check_month(month)
    from batch.demo_data import generate_month, write_landing  # deferred: start-up speed (see the imports)

    tables = generate_month(month, requests=n_requests, resources=n_resources, seed=seed)
    path = write_landing(settings().home, month, tables)
    result = {"month": month, "landing": str(path), **{t: len(df) for t, df in tables.items()}}
    emit(result, as_json, lambda: out.print(
        f"Wrote {month}: {result.get('requests', 0)} requests, {result.get('resources', 0)} resources -> {path}"))


@main.command()
@click.argument("month")
@click.option("--actor", help="Who acts (else BATCH_ADMIN_ACTOR).")
@click.option("--json", "as_json", is_flag=True)
@friendly
def plan(month: str, actor: str | None, as_json: bool) -> None:
    """Preview a month: validate inputs, demand vs capacity, conflicts, expected allocation."""
    run_id = _follow(_admitted(PLAN_JOB, month, actor, None).follows)
    latest = store().latest_plan(month) or {}
    result = {"month": month, "run_id": run_id, "plan": latest.get("summary", {})}

    def human() -> None:
        _print_mapping(f"Plan of {month} (run {run_id})", {k: v for k, v in result["plan"].items() if k != ADVICE_KEY})
        print_advice(out, result["plan"].get(ADVICE_KEY))

    emit(result, as_json, human)


@main.command()
@click.argument("month")
@click.option("--actor", help="Who acts (else BATCH_ADMIN_ACTOR).")
@click.option("--note", help="Why this iteration; required from version 2 on.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def run(month: str, actor: str | None, note: str | None, as_json: bool) -> None:
    """Solve the month and write a new version (planning steps included)."""
    run_id = _follow(_admitted(EXECUTE_JOB, month, actor, note).follows)
    version = store().versions(month)[-1]
    result = {"month": month, "run_id": run_id, **_version_summary(version)}

    def human() -> None:
        from batch.metrics import format_count, headline  # deferred: start-up speed (see the imports)

        rows = dict(headline(version["metrics"]))
        _print_rows(f"Month {month}: version {version['version']} proposed", {
            **rows, "Solve time": f"{version['metrics'].get('solve_seconds') or 0:,.1f} s",
            "Export": result["export_path"]})
        conflicts = (version["metrics"].get("unprocessed_by_reason") or {}).get("pin_conflict")
        if conflicts:
            err.print(f"note: {format_count(conflicts)} pin(s) could not be honoured (reason pin_conflict); "
                      f"see `batch-admin report {month}`.", markup=False)

    emit(result, as_json, human)


def _admitted(job: str, month: str, actor: str | None, note: str | None) -> Outcome:
    """A run of `job` for `month`, admitted by the action layer with a new run ticket of the actor's."""
    # The landing folder first, then the role, then the key: a refusal names what is missing.
    who = actions.may_run(store, job, actor_from(actor), month, home=settings().home)
    ticket = make_ticket(signer(who), who, job, [month], DEFAULT_TICKET_MINUTES)
    return actions.admit_run(store(), ticket, month=month, note=note)


def _now() -> datetime:
    return datetime.now(UTC)


def _version_summary(version: dict[str, Any]) -> dict[str, Any]:
    metrics = version["metrics"]
    return {
        "version": version["version"], "created_at": version["created_at"], "actor": version["actor"],
        "note": version["note"], "status": version["status"], "export_path": version["export_path"],
        "requests": metrics.get("requests"), "allocated": metrics.get("allocated"),
        "success_rate": metrics.get("success_rate"), "objective": metrics.get("objective"),
        "bound": metrics.get("bound"), "gap": metrics.get("gap"),
        "solve_seconds": metrics.get("solve_seconds"), "stop_reason": metrics.get("stop_reason"),
        "churn": metrics.get("churn"), "metrics": metrics,
    }


def _print_rows(title: str, rows: dict[str, str]) -> None:
    """Label and already formatted value, one per line."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for label, value in rows.items():
        table.add_row(label, value)
    out.print(table)


def _print_mapping(title: str, mapping: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    for key, value in mapping.items():
        if isinstance(value, float):
            value = f"{value:,.4f}" if abs(value) < 10 else f"{value:,.1f}"
        table.add_row(str(key), str(value))
    out.print(table)


@main.command()
@click.argument("month", required=False)
@click.option("--json", "as_json", is_flag=True)
@friendly
def status(month: str | None, as_json: bool) -> None:
    """Phase, locks, versions with their metrics, finalization and approvals of a month; every month without one."""
    if month is not None:
        check_month(month)  # before the imports below: a refusal answers at once
    # Deferred: start-up speed (see the imports).
    from batch.approvals import OPEN_STATUSES
    from batch.health import month_health, months_overview
    from batch.lifecycle import final_mismatch
    from batch.params import param_settings

    control = store()
    if month is None:
        lines = months_overview(control, exports())
        emit(lines, as_json, lambda: _print_overview(lines))
        return
    check_month(month)
    row = control.month(month)
    lock = control.lock_info(month)
    lease = control.lease(month)
    result = {
        "month": month, "phase": row["phase"],
        "lock": lock.to_dict() if lock else None,
        "lease": lease.to_dict() if lease else None,
        "final": {"version": row["final_version"], "finalized_by": row["finalized_by"],
                  "approved_by": row["approved_by"], "finalized_at": row["finalized_at"]}
        if row["final_version"] else None,
        "params": control.params(month),
        "params_set": [p.to_dict() for p in param_settings(control.params(month), control.audit_entries(month))],
        "adjustments": control.adjustments_in_force(month).to_dict(),
        "plan": (control.latest_plan(month) or {}).get("summary"),
        "versions": [_version_summary(v) for v in control.versions(month)],
        "health": month_health(control, exports(), month),
        "requests": [r.to_dict(_now()) for r in control.requests(month) if r.effective_status(_now())
                     in OPEN_STATUSES],
        "official_copy_problem": final_mismatch(row, exports()),
    }
    result[ADVICE_KEY] = result["versions"][-1]["metrics"].get(ADVICE_KEY) if result["versions"] else None
    emit(result, as_json, lambda: _print_status(result))


def _print_overview(lines: list[dict[str, Any]]) -> None:
    """One row per month."""
    from batch.metrics import format_count, format_figure  # deferred: start-up speed (see the imports)

    if not lines:
        out.print("No months yet: land inputs (or `batch-admin demo-data YYYY-MM`) and run one.")
        return
    table = Table("month", "phase", "versions", "final", "lock", "requests", "allocated", "success", "utilization",
                  "gap", "alerts", title="Every month", title_justify="left")
    for line in lines:
        alerts = f"{line['alerts']}" + (f" ({line['errors']} errors)" if line["errors"] else "")
        table.add_row(line["month"], line["phase"], str(line["versions"]),
                      f"v{line['final_version']}" if line["final_version"] else "–", line["lock"] or "–",
                      format_count(line["requests"]), format_count(line["allocated"]),
                      format_figure("success_rate", line["success_rate"]),
                      format_figure("utilization", line["utilization"]), format_figure("gap", line["gap"]), alerts)
    out.print(table)


def _print_status(result: dict[str, Any]) -> None:
    from batch.metrics import format_count, format_figure  # deferred: start-up speed (see the imports)

    out.print(f"[bold]{result['month']}[/bold]  phase: [bold]{result['phase']}[/bold]")
    if result["lock"]:
        lock = result["lock"]
        state = "active" if lock["active"] else "expired"
        out.print(f"temporary lock ({state}): {lock['holder']} for {', '.join(lock['admins'])} until {local(lock['expires_at'])}")
    if result.get("lease"):
        lease = result["lease"]
        since = f"run {lease['run_id']} since {local(lease['acquired_at'])}"
        if lease["alive"]:
            out.print(f"executing: {since}, last heartbeat {lease['heartbeat_age_s']:.0f} s ago", markup=False)
        else:
            out.print(f"[red]executing:[/red] {escape(since)}: dead ({escape(lease['dead_because'])}); "
                      f"the next run takes over")
    if result["final"]:
        final = result["final"]
        out.print(f"final lock: version {final['version']} by {final['finalized_by']}, "
                  f"approved by {final['approved_by']} at {local(final['finalized_at'])}")
    if result.get("official_copy_problem"):
        out.print(f"[red]inconsistent:[/red] {escape(result['official_copy_problem'])}; "
                  f"`batch-admin repair {result['month']}` completes or rolls it back.")
    for request in result.get("requests") or []:
        out.print(f"request {request['id']} ({request['status']}): {request['kind']}"
                  f"{' version ' + str(request['version']) if request['kind'] == 'finalize' else ''} by "
                  f"{request['requested_by']}, expires {local(request['expires_at'])}", markup=False)
    print_settings(out, result)
    table = Table("version", "created", "actor", "requests", "allocated", "success", "objective", "gap", "solve s",
                  "stopped", "moved", "note")
    for v in result["versions"]:
        table.add_row(str(v["version"]), local(v["created_at"]), str(v["actor"]), format_count(v["requests"]),
                      format_count(v["allocated"]), format_figure("success_rate", v["success_rate"]),
                      format_count(v["objective"]), format_figure("gap", v["gap"]),
                      format_figure("solve_seconds", v["solve_seconds"]), STOP_WORDS.get(v["stop_reason"] or "", "–"),
                      _moved(v["churn"]), v["note"] or "")
    out.print(table)
    health = result.get("health") or {}
    metrics = health.get("metrics") or {}
    if metrics.get("unprocessed_by_reason"):
        out.print("unprocessed by reason: " + ", ".join(
            f"{reason} {count}" for reason, count in sorted(metrics["unprocessed_by_reason"].items())))
    if health.get("utilization_by_service_region"):
        util = Table("service", "region", "resources", "capacity", "planned", "utilization", title="Planned utilization")
        for row in health["utilization_by_service_region"]:
            util.add_row(str(row.get("service")), str(row.get("region")), format_count(row.get("resources")),
                         format_count(row.get("capacity")), format_count(row.get("planned_units")),
                         format_figure("utilization", row.get("utilization")))
        out.print(util)
    if health.get("planned_vs_actual"):
        pva = health["planned_vs_actual"]
        out.print(f"planned vs actual: planned {_pct(pva.get('planned_utilization'))}, "
                  f"actual {_pct(pva.get('actual_utilization'))}")
    if len(health.get("trend") or []) > 1:
        trend = Table("month", "version", "success", "unallocated", "utilization", "objective", "gap", title="Trend")
        for row in health["trend"]:
            trend.add_row(row["month"], str(row.get("version") or ""), _pct(row.get("success_rate")),
                          _pct(row.get("unallocated_ratio")), _pct(row.get("utilization")),
                          format_count(row.get("objective")), format_figure("gap", row.get("gap")))
        out.print(trend)
    for problem in health.get("problems") or []:
        out.print(f"[yellow]note:[/yellow] {problem}")
    from batch.advice import advice_lines  # deferred: start-up speed (see the imports)

    print_advice(out, advice_lines(result.get(ADVICE_KEY), count=3))


# Why a version's solve stopped (solvers' Proposal.stop_reason), as the status table says it.
STOP_WORDS = {"optimal": "optimal", "gap_tolerance": "tolerance", "time_limit": "time limit",
              "deterministic_budget": "work budget"}


def _moved(churn: dict[str, Any] | None) -> str:
    """Requests moved since the previous version (solvers/churn.py), '–' for a first version."""
    if not churn or not churn.get("previous_allocated"):
        return "–"
    return f"{int(churn['requests_moved']):,}"


def _pct(value: Any, digits: int = 1) -> str:
    return "" if value is None else f"{float(value):.{digits}%}"


@main.command()
@click.argument("month")
@click.option("--actor")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="A parameter to set; repeat for several (e.g. time_limit_s=30 weight.1=2000).")
@click.option("--unset", "unsets", multiple=True, metavar="KEY",
              help="A parameter to return to its default (e.g. stability: strict again); repeat for several.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def params(month: str, actor: str | None, assignments: tuple[str, ...], unsets: tuple[str, ...],
           as_json: bool) -> None:
    """Set or unset batch parameters of a month (validated, audited, snapshotted with every version)."""
    check_planned_month(month)
    who = actions.may(store(), "params", actor_from(actor), month)
    from batch.actions.changes import params_details, set_params  # deferred: start-up speed (see the imports)
    from batch.params import parse_assignment

    details = params_details(dict(parse_assignment(a) for a in assignments), list(unsets))
    current = set_params(store(), sign_as(who, "params", month, details)).params or {}
    emit({"month": month, "params": current}, as_json,
         lambda: _print_mapping(f"Parameters of {month}", current))


@main.command()
@click.argument("month")
@click.option("--actor")
@click.option("--pin", metavar="REQ=RES", help="Fix a request to a resource (hard in the next run).")
@click.option("--exclude", metavar="REQ", help="Remove a request from the next run.")
@click.option("--unpin", metavar="REQ", help="Take back the pin of a request.")
@click.option("--include", metavar="REQ", help="Take back the exclusion of a request.")
@click.option("--clear", is_flag=True, help="Take back every pin and exclusion of the month.")
@click.option("--note", required=True, help="Why this adjustment.")
@friendly
def adjust(month: str, actor: str | None, pin: str | None, exclude: str | None, unpin: str | None,
           include: str | None, clear: bool, note: str) -> None:
    """Pin a request to a resource or exclude it, or take that back; the next run honours it."""
    check_planned_month(month)
    who = actions.may(store(), "adjust", actor_from(actor), month)
    given = {"pin": pin, "exclude": exclude, "unpin": unpin, "include": include, "clear": clear or None}
    if sum(v is not None for v in given.values()) != 1:
        raise CliError("Give exactly one of --pin REQ=RES, --exclude REQ, --unpin REQ, --include REQ or --clear.")
    # Deferred: start-up speed (see the imports).
    from batch.actions.changes import adjust as adjust_month
    from batch.actions.changes import adjust_details

    kind, value = next((k, str(v)) for k, v in given.items() if v is not None)
    details = adjust_details(kind, value, note)
    outcome = adjust_month(store(), sign_as(who, "adjust", month, details), home=settings().home)
    out.print(outcome.message, markup=False)


@main.command()
@click.argument("month")
@click.option("--actor")
@click.option("--admins", required=True, help="Comma-separated admins who may act while it is held.")
@click.option("--ttl", "ttl_hours", default=8.0, show_default=True, type=float, help="Time to live, hours.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def lock(month: str, actor: str | None, admins: str, ttl_hours: float, as_json: bool) -> None:
    """Take the temporary lock of a month for a list of designated admins."""
    check_planned_month(month)
    who = actions.may(store(), "lock", actor_from(actor), month)
    names = [a.strip() for a in admins.split(",") if a.strip()]
    outcome = actions.lock(store(), sign_as(who, "lock", month, {"admins": names, "ttl_hours": ttl_hours}))
    assert outcome.lock is not None
    emit({"month": month, "lock": outcome.lock.to_dict()}, as_json, lambda: out.print(outcome.message))


@main.command()
@click.argument("month")
@click.option("--actor")
@friendly
def release(month: str, actor: str | None) -> None:
    """Release the temporary lock of a month."""
    check_planned_month(month)
    who = actions.may(store(), "release", actor_from(actor), month)
    out.print(actions.release(store(), sign_as(who, "release", month)).message)


@main.command()
@click.argument("month")
@click.option("--version", "version", required=True, type=click.IntRange(1))
@click.option("--actor", help="The admin who files the request (else BATCH_ADMIN_ACTOR).")
@click.option("--note", required=True, help="Why this version should become official.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def finalize(month: str, version: int, actor: str | None, note: str, as_json: bool) -> None:
    """File a request to finalize a version; an approver carries it out with `batch-admin approve ID`."""
    check_planned_month(month)
    who = actions.may(store(), "finalize", actor_from(actor), month)
    details = actions.finalize_details(store(), exports(), month, version, note)
    _print_filed(actions.file_request(store(), sign_as(who, "request", month, details), view_origin()), as_json)


@main.command()
@click.argument("month")
@click.option("--actor", help="The admin who files the request (else BATCH_ADMIN_ACTOR).")
@click.option("--reason", required=True, help="Why the finalized month must change.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def unlock(month: str, actor: str | None, reason: str, as_json: bool) -> None:
    """File a request to unlock a finalized month; an approver carries it out (raises an alert)."""
    check_planned_month(month)
    who = actions.may(store(), "unlock", actor_from(actor), month)
    details = actions.unlock_details(store(), month, reason)
    _print_filed(actions.file_request(store(), sign_as(who, "request", month, details), view_origin()), as_json)


@main.command("accept-roles")
@click.option("--actor", help="The admin who files the request (else BATCH_ADMIN_ACTOR).")
@click.option("--note", required=True, help="What changed in the roles file, and why.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def accept_roles(actor: str | None, note: str, as_json: bool) -> None:
    """File a request to accept the changed roles file (BATCH_ADMIN_ROLES); an approver approves it."""
    who = actions.may(store(), "roles", actor_from(actor), None, gate=False)
    details = actions.roles_details(Roles.load(settings().roles_file), note)
    _print_filed(actions.file_request(store(), sign_as(who, "request", None, details), view_origin()), as_json)


def _print_filed(outcome: Outcome, as_json: bool) -> None:
    assert outcome.request is not None
    emit(outcome.request.to_dict(_now()), as_json, lambda: out.print(outcome.message, markup=False))


@main.command("requests")
@click.argument("month", required=False)
@click.option("--all", "every", is_flag=True, help="Decided and expired requests too (default: open ones).")
@click.option("--json", "as_json", is_flag=True)
@friendly
def requests_(month: str | None, every: bool, as_json: bool) -> None:
    """Finalize, unlock and roles requests: open ones (of a month, or all), or --all."""
    if month is not None:
        check_month(month)
    from batch.approvals import OPEN_STATUSES  # deferred: start-up speed (see the imports)

    now = _now()
    rows = [r.to_dict(now) for r in store().requests(month)]
    if not every:
        rows = [r for r in rows if r["status"] in OPEN_STATUSES]

    def human() -> None:
        if not rows:
            out.print("No open requests." if not every else "No requests.")
            return
        table = Table("id", "kind", "month", "version", "by", "filed", "expires", "status", "decided by", "note / reason")
        for r in rows:
            table.add_row(r["id"], r["kind"], str(r["month"] or ""), str(r["version"] or ""), r["requested_by"],
                          local(r['requested_at']), local(r['expires_at']), r["status"],
                          str(r["decided_by"] or ""), r["decision_text"] or r["text"])
        out.print(table)

    emit(rows, as_json, human)


@main.command()
@click.argument("request_id")
@click.option("--actor", help="The approver (else BATCH_ADMIN_ACTOR); never the request's filer.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def approve(request_id: str, actor: str | None, as_json: bool) -> None:
    """Approve a request with your own key and carry it out (finalize: official copy + final lock)."""
    from batch.approvals import KIND_FINALIZE  # deferred: start-up speed (see the imports)

    control = store()
    request = control.request(request_id)
    who = actor_from(actor)
    if not who:
        raise CliError("Who approves? Give --actor or BATCH_ADMIN_ACTOR.")
    issued = request_ticket(who, request)  # the approval issues its request's single run ticket
    outcome = actions.approve(control, sign_as(who, "approve", request.month, actions.approval_details(request, issued)),
                              ticket=issued)
    decided, message = outcome.request, outcome.message
    assert decided is not None
    result: dict[str, Any] = {"request": decided.id, "kind": decided.kind, "month": decided.month,
                              "approved_by": who}
    if outcome.follows is not None:
        result["run_id"] = _follow(outcome.follows)
    if decided.kind == KIND_FINALIZE:
        result["final_path"] = str(settings().home / "exports" / "final" / f"month={decided.month}")
        message += f"; official copy {result['final_path']}"
    emit(result, as_json, lambda: out.print(message, markup=False))


@main.command()
@click.argument("request_id")
@click.option("--actor", help="The approver (else BATCH_ADMIN_ACTOR).")
@click.option("--reason", required=True, help="Why it is rejected (sent with the alert).")
@friendly
def reject(request_id: str, actor: str | None, reason: str) -> None:
    """Reject a request with your own key (raises an alert)."""
    control = store()
    request = control.request(request_id)
    who = actor_from(actor)
    if not who:
        raise CliError("Who rejects? Give --actor or BATCH_ADMIN_ACTOR.")
    outcome = actions.reject(control, sign_as(who, "reject", request.month, {"request_id": request.id,
                                                                          "reason": reason}))
    out.print(outcome.message, markup=False)


@main.command()
@click.argument("name")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the private key (default: ~/.config/batch-admin/NAME.key).")
@friendly
def keygen(name: str, out_path: Path | None) -> None:
    """Make an Ed25519 key pair for NAME; prints the line to add under keys: in the roles file."""
    from batch.identity import generate_key, write_private_key  # deferred: start-up speed (see the imports)

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise CliError(f"A name is 1 to 64 letters, digits, '.', '_' or '-', not {name!r}.")
    path = (out_path or default_key_path(name)).expanduser()
    pem, public = generate_key()
    try:
        write_private_key(path, pem)
    except FileExistsError:
        raise CliError(f"{path} exists already; a key is never overwritten (move it away first).") from None
    except OSError as exc:
        raise CliError(f"Cannot write {path}: {exc.strerror}.") from None
    err.print(f"Private key written to {path} (readable by you only; keep it secret).")
    err.print("Add this line under `keys:` in the roles file, then have the change accepted "
              "(`batch-admin accept-roles`, approved by an approver):")
    out.print(f"  {name}: {public}", markup=False)


@main.command()
@click.argument("months", nargs=-1, required=True)
@click.option("--job", required=True, help="The job the run executes (execute_job, plan_job, or __ASSET_JOB "
                                           "for assets materialized from the UI).")
@click.option("--actor", help="Who the run acts as (else BATCH_ADMIN_ACTOR); signed with that person's key.")
@click.option("--minutes", default=DEFAULT_TICKET_MINUTES, show_default=True,
              type=click.FloatRange(0, MAX_TICKET_MINUTES, min_open=True), help="How long the ticket is valid.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def ticket(months: tuple[str, ...], job: str, actor: str | None, minutes: float, as_json: bool) -> None:
    """A signed run ticket for a run launched in the UI or a backfill: one run per month listed."""
    for month in months:
        check_planned_month(month)
    who = actions.may(store(), "run", actor_from(actor), f"{job} for {', '.join(months)}")  # "run JOB for MONTHS"
    signed = make_ticket(signer(who), who, job, list(months), minutes)
    value = signed.encode()
    data = {"tag": TICKET_TAG, "value": value, "job": job, "months": sorted(months),
            "expires_at": signed.details["expires_at"], "actor": who}
    def human() -> None:
        err.print(f"Run ticket of {who} for {job}, {', '.join(sorted(months))}, valid until "
                  f"{local(signed.details['expires_at'])}, one run per month. In the UI's launchpad add the tag:")
        out.print(f"{TICKET_TAG}={value}", markup=False, soft_wrap=True)

    emit(data, as_json, human)


@main.command()
@click.argument("month")
@click.option("--actor", help="Who carries out approved requests (else BATCH_ADMIN_ACTOR).")
@click.option("--json", "as_json", is_flag=True)
@friendly
def repair(month: str, actor: str | None, as_json: bool) -> None:
    """Complete or roll back what a crash left half done: an approved request not carried out, an
    official copy that the control store does not back."""
    check_month(month)
    from batch.approvals import TICKET_ISSUED_ACTION  # deferred: start-up speed (see the imports)
    from batch.lifecycle import final_mismatch, repair_plan

    control = store()
    fixes, pending = repair_plan(control, exports(), month)
    for request in pending:
        who = actor_from(actor) or str(request.decided_by)
        issued = request_ticket(who, request)
        assert issued is not None  # repair_plan returns finalize and unlock requests only
        outcome = actions.reissue(control, sign_as(who, TICKET_ISSUED_ACTION, month, {
            "request_id": request.id, "ticket_nonce": issued.nonce}), ticket=issued)
        _follow(outcome.follows)
        fixes.append(outcome.message)
    left = final_mismatch(control.month(month), exports())
    result = {"month": month, "fixes": fixes, "consistent": left is None, "problem": left}
    if left is not None:
        raise CliError(f"{month} is still inconsistent after repair: {left}.")
    emit(result, as_json, lambda: out.print(
        "\n".join(f"{month}: {fix}." for fix in fixes) or f"{month}: nothing to repair; the control store and "
        f"exports/final agree.", markup=False))


@main.command()
@click.argument("month")
@click.option("--version", "version", type=int, help="A given version (default: the latest).")
@click.option("--final", is_flag=True, help="The official allocation of a finalized month.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv", "xlsx"]), default="csv", show_default=True)
@click.option("--service")
@click.option("--region")
@click.option("--resource")
@click.option("--status", "status_")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path),
              help="The file to write (outside BATCH_ADMIN_HOME).")
@click.option("--force", is_flag=True, help="Replace the file if it exists.")
@click.option("--actor", help="Who exports (anyone in the roles file; else BATCH_ADMIN_ACTOR).")
@click.option("--json", "as_json", is_flag=True)
@friendly
def export(month: str, version: int | None, final: bool, fmt: str, service: str | None, region: str | None,
           resource: str | None, status_: str | None, out_path: Path, force: bool, actor: str | None,
           as_json: bool) -> None:
    """Export a whole month, or a filtered part of it, as Parquet, CSV or XLSX."""
    check_month(month)
    who = actions.may(store(), "export", actor_from(actor), month)
    if final and version is not None:
        raise CliError("Give --version N or --final, not both.")
    key = signer(who)  # before writing anything: no key, no export
    from batch.report import standing_of  # deferred: start-up speed (see the imports)

    result = exports().export(month, fmt=fmt, out=out_path, version=version, final=final,
                              service=service, region=region, resource=resource, status=status_, force=force,
                              standing=standing_of(store(), exports(), month, version, final))
    try:
        actions.record_export(store(), sign(key, who, "export", month, {k: str(v) for k, v in result.items()} | {
            "filters": {"service": service, "region": region, "resource": resource, "status": status_}}))
    except (IdentityError, RoleError):
        Path(result["path"]).unlink(missing_ok=True)  # an export nobody can be held to is not left behind
        raise
    emit(result, as_json, lambda: out.print(f"Wrote {result['rows']} rows to {result['path']}"
                                            + (f". {result['empty']}" if result.get("empty") else ""), markup=False))


@main.command()
@click.argument("month")
@click.option("--from", "from_version", required=True, type=int)
@click.option("--to", "to_version", required=True, type=int)
@click.option("--all", "every", is_flag=True, help="Every metric (timings, sizes...) and every moved request.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def diff(month: str, from_version: int, to_version: int, every: bool, as_json: bool) -> None:
    """Compare two versions: objective, gap, success rate and counts first, then the requests that moved."""
    check_month(month)
    # Deferred: start-up speed (see the imports).
    from batch.metrics import format_change, format_figure
    from batch.report import TOP_MOVES, leading_changes

    result = exports().diff(month, from_version, to_version)

    def human() -> None:
        counts = result["counts"]
        out.print(f"[bold]{month}: version {from_version} -> {to_version}[/bold]  "
                  f"moved {counts['moved']:,}, added {counts['added']:,}, removed {counts['removed']:,}, "
                  f"unchanged {counts['unchanged']:,}")
        table = Table("metric", "from", "to", "change")
        for name, change in leading_changes(result, every).items():
            table.add_row(name.replace("_", " "), format_figure(name, change.get("from")),
                          format_figure(name, change.get("to")), format_change(name, change.get("change")))
        out.print(table)
        shown = (result["moved"] if every else result["moved"][:TOP_MOVES])
        for title, items, fmt in (("moved", shown, lambda m: f"{m['request_id']}: {m['from_resource']} -> {m['to_resource']}"),
                                  ("added", result["added"] if every else result["added"][:TOP_MOVES],
                                   lambda m: f"{m['request_id']} -> {m['resource_id']}"),
                                  ("removed", result["removed"] if every else result["removed"][:TOP_MOVES],
                                   lambda m: f"{m['request_id']} (was {m['resource_id']})")):
            if items:
                total = counts[title]
                more = "" if len(items) == total else f" (first {len(items)} of {total:,}; --all for every one)"
                out.print(f"{title}{more}: " + ", ".join(fmt(m) for m in items), markup=False)
        if not every:
            out.print("--all shows every metric, timings included.", style="dim")

    emit(result, as_json, human)


@main.command()
@click.argument("month", required=False)
@click.option("--verify", is_flag=True, help="Check the hash chain, every signature, the anchors in manifests and "
                                            "the Dagster event log, and the state tables; fail on the first problem.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def audit(month: str | None, verify: bool, as_json: bool) -> None:
    """The append-only, hash-chained, signed audit log of a month (or of everything)."""
    if month is not None:
        check_month(month)
    control = store()
    if verify:
        from batch.lifecycle import final_mismatch  # deferred: start-up speed (see the imports)
        from batch_cli.instance import event_log_anchors

        anchors = [*exports().audit_anchors(), *event_log_anchors()]
        result = control.verify_audit(anchors)
        mismatches = [problem for m in control.months()
                      if (month is None or m["month"] == month) and (problem := final_mismatch(m, exports()))]
        result.problems.extend(f"{problem} (`batch-admin repair MONTH` fixes it)" for problem in mismatches)
        result.ok = not result.problems
        data = {"ok": result.ok, "entries": result.entries, "anchors": len(anchors), "problems": result.problems}
        if not result.ok:
            if as_json:
                click.echo(json.dumps(data, indent=2))
            raise CliError(f"The audit log was tampered with: {result.problems[0]}.",
                           "\n".join(result.problems[1:]) or None)
        emit(data, as_json, lambda: out.print(
            f"Audit log intact: {result.entries} entries, their signatures and {len(anchors)} anchors verified; "
            f"the state tables and official copies agree with it."))
        return
    entries = control.audit_entries(month)
    rows = [{k: e[k] for k in ("id", "month", "at", "actor", "action", "details", "hash")} for e in entries]

    def human() -> None:
        from batch.report import audit_line  # deferred: start-up speed (see the imports)

        table = Table("id", "when (local time)", "month", "who", "action", "what")
        for e in rows:
            when, who, action, what = audit_line(e)
            table.add_row(str(e["id"]), when, str(e["month"] or ""), who, action, what)
        out.print(table)

    emit(rows, as_json, human)


@main.command()
@click.argument("month", required=False)
@click.option("--pending", is_flag=True, help="Only alerts a sink has not taken yet (retried by the alert_outbox sensor).")
@click.option("--json", "as_json", is_flag=True)
@friendly
def alerts(month: str | None, pending: bool, as_json: bool) -> None:
    """Alerts raised (all, or of one month), with their deliveries; --pending: those still waiting."""
    if month is not None:
        check_month(month)
    rows = store().alerts(month, pending=pending)

    def human() -> None:
        table = Table("id", "created", "month", "severity", "rule", "delivered", "message")
        for a in rows:
            delivered = (local(a["delivered_at"]) if a["delivered_at"] else
                         f"pending ({a['attempts']} attempts, next {local(a['next_attempt_at'])})"
                         if a["next_attempt_at"] else "pending")
            table.add_row(str(a["id"]), local(a["created_at"]), str(a["month"] or ""),
                          a["severity"], a["rule"], delivered, a["message"])
        out.print(table)

    emit(rows, as_json, human)


@main.command()
@click.argument("month")
@click.option("--version", "version", type=int, help="A given version (default: the final one, else the latest).")
@click.option("--out", "out_path", type=click.Path(path_type=Path),
              help="Where to write the page (default: report.html beside the version's manifest); outside "
                   "BATCH_ADMIN_HOME, like an export.")
@click.option("--force", is_flag=True, help="Replace the --out file if it exists.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def report(month: str, version: int | None, out_path: Path | None, force: bool, as_json: bool) -> None:
    """One self-contained HTML page about a version: figures, charts, reasons, changes, who did what."""
    check_month(month)
    from batch.report import version_view  # deferred: start-up speed (see the imports)
    from resources.storage import check_target

    if out_path is not None:  # the export's rules, checked before the page is built
        out_path = check_target(settings().home, out_path, force, protected_paths())
    store_ = exports()
    try:
        view = version_view(store(), store_, month, version)
    except LookupError as exc:
        raise CliError(str(exc)) from None
    html = view.to_html()
    if out_path is None:
        path = store_.write_report(month, view.version, html)
    else:
        path = write_file(out_path, html, "report")
    result = {"month": month, "version": view.version, "final": view.final, "path": str(path)}
    emit(result, as_json, lambda: out.print(f"Report of {view.title}: {path}", markup=False))


@main.command()
@friendly
def migrate() -> None:
    """Apply the control store's schema migrations and Dagster's instance migrations."""
    from batch_cli import instance as dagster_instance  # deferred: start-up speed (see the imports)
    from resources.store_factory import migrate_control_store

    migrate_control_store(settings().control_url)
    dagster_instance.instance().upgrade()
    out.print("Control store and Dagster instance are up to date.")


@main.command()
@click.option("--port", default=3000, show_default=True, type=click.IntRange(1, 65534))
@click.option("--host", default="127.0.0.1", show_default=True)
@friendly
def ui(port: int, host: str) -> None:
    """The admin view on PORT and the Dagster UI and daemon (`dagster dev`) on PORT + 1, on this deployment."""
    from batch_cli import instance as dagster_instance  # deferred: start-up speed (see the imports)

    dagster_instance.instance()  # prepares DAGSTER_HOME and sizes the solver pool
    # A process of its own (python -m batch_view): the view is an entry point beside the CLI, not part of it.
    os.execv(sys.executable, [sys.executable, "-m", "batch_view", "--host", host, "--port", str(port),
                              "--workspace", str(dagster_instance.WORKSPACE_YAML)])


@main.command()
@click.option("--queues", default=",".join(QUEUES), show_default=True,
              help="Comma-separated queues to serve: solver (the solve parts), default (every other step).")
@click.option("--concurrency", type=click.IntRange(1, MAX_WORKER_CONCURRENCY), default=None,
              help="Steps at a time (pool processes); default: the host's cores.")
@friendly
def worker(queues: str, concurrency: int | None) -> None:
    """A Celery worker for runs on the Celery executor (BATCH_ADMIN_EXECUTOR=celery)."""
    chosen = [name.strip() for name in queues.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(QUEUES))
    if not chosen or unknown:
        raise CliError(f"--queues takes {' and/or '.join(QUEUES)}, not {','.join(unknown) or 'nothing'}.")
    from batch_cli.worker import run_worker  # deferred: start-up speed (see the imports)

    run_worker(settings(), chosen, concurrency)


main.add_command(whatif_command(settings, exports, emit, out))
main.add_command(passkey_command(signer, actor_from, emit, out))


def entry() -> NoReturn:
    """The `batch-admin` program: main(), then the control-store connections closed before exit."""
    try:
        main(prog_name="batch-admin")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_FAILED)
    close_stores()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
