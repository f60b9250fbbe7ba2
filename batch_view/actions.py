"""The view's demo changes and the checks every POST shares.

On the embedded default, a demo person without a passkey may sign in by name and lock, release, run and
export: the server signs each action with the shipped demo key of the person signed in and hands it to the
same action-layer functions the CLI calls (batch.actions); their rules (roles, locks, final locks, ttl,
export targets) are theirs, and a refusal changes nothing. Once a person has a passkey, every change of
theirs is signed with it (batch_view.passkey_views): the server signs nothing more in their name.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dagster_graphql import DagsterGraphQLClientError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response

from batch import actions
from batch.errors import ControlError
from batch.identity import (
    DEFAULT_TICKET_MINUTES,
    DEMO_KEYS_DIR,
    IdentityError,
    Signed,
    load_private_key,
    make_ticket,
    sign,
)
from batch.months import MonthError, check_month, check_planned_month
from batch.passkeys import PasskeyError
from batch.roles import MONTH_TAG, RoleError
from batch_view.session import Refused, form_of, set_session
from batch_view.sources import PARTITION_TAG, Sources
from resources.storage import ExportError

REFUSALS = (DagsterGraphQLClientError, ControlError, RoleError, MonthError, ExportError, LookupError, ValueError)
FORMATS = {"csv": "text/csv", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
           "parquet": "application/vnd.apache.parquet"}
DEFAULT_LOCK_HOURS = 8.0

Problem = Callable[[Request, int, str], Response]


def demo_key(src: Sources, who: str) -> Ed25519PrivateKey:
    """`who`'s shipped demo key: on the embedded default with the shipped roles only."""
    if not src.demo:
        raise Refused("Signing in with the demo keys works only on the embedded default with the shipped roles "
                      "file; here each person signs in and signs changes with their passkey (or the CLI).")
    return load_private_key(who, str(DEMO_KEYS_DIR / f"{who}.key"))


def demo_signer(src: Sources, who: str) -> Callable[[str, str | None, dict[str, Any]], Signed]:
    """Signs `who`'s actions with their shipped demo key, for a demo person who has no passkey: a person
    with one signs every change with it, and a session alone changes nothing in their name."""
    key = demo_key(src, who)
    if any(found["person"] == who for found in src.store.passkeys()):
        raise Refused(f"{who} has a passkey: {who}'s changes are signed with it, never by the server.")
    return lambda action, month, details: sign(key, who, action, month, details)


def demo_people(src: Sources) -> list[str]:
    """The people of the accepted roles who have a shipped demo key, who may sign in on the demo."""
    roles = src.store.roles(gate=False)
    return sorted(name for name in roles.admins | roles.approvers if (DEMO_KEYS_DIR / f"{name}.key").is_file())


async def sign_in(request: Request) -> Response:
    """Sign a demo person in (a session cookie); the page they came from again."""
    src: Sources = request.app.state.sources

    async def work(form: dict[str, str]) -> Response:
        who = form.get("person", "")
        src.store.roles().require_known(who, "sign in")
        demo_key(src, who)  # refused off the demo, and for a name without a demo key
        response = RedirectResponse(_back(form), status_code=303)
        set_session(response, request.app.state.guard, who)
        return response

    return await _posted(request, work, signed_in=False)


async def sign_out(request: Request) -> Response:
    async def work(form: dict[str, str]) -> Response:
        response = RedirectResponse(_back(form), status_code=303)
        set_session(response, request.app.state.guard, None)
        return response

    return await _posted(request, work, signed_in=False)


async def lock(request: Request) -> Response:
    """Take the month's temporary lock for the admins named (as `batch-admin lock`)."""
    month = check_month(request.path_params["month"])

    def change(src: Sources, who: str, form: dict[str, str]) -> None:
        names = [name.strip() for name in form.get("admins", "").split(",") if name.strip()]
        hours = _number(form.get("ttl_hours") or str(DEFAULT_LOCK_HOURS), "ttl_hours")
        actions.lock(src.store, demo_signer(src, who)("lock", month, {"admins": names, "ttl_hours": hours}))

    return await _change(request, month, change)


async def release(request: Request) -> Response:
    """Release the month's temporary lock (as `batch-admin release`)."""
    month = check_month(request.path_params["month"])

    def change(src: Sources, who: str, form: dict[str, str]) -> None:
        actions.release(src.store, demo_signer(src, who)("release", month, {}))

    return await _change(request, month, change)


async def run(request: Request) -> Response:
    """Run the month (as `batch-admin run`): the action layer's admission (inputs landed, an admin, the month's
    locks, a note from version 2 on), then a run of execute_job for the month, with a run ticket signed by the
    person, submitted through the Dagster webserver beside the view to the instance's queue, as a launch from
    the Dagster UI is."""
    month = check_planned_month(request.path_params["month"])

    def change(src: Sources, who: str, form: dict[str, str]) -> None:
        note = form.get("note", "").strip() or None
        job = actions.run_job_named(form.get("job"))  # execute_job, or plan_job for a preview

        def sign(person: str) -> Signed:  # the person's demo key, once the role is known (as the CLI loads a key)
            demo_signer(src, person)  # refused off the demo, and for a person with a passkey
            return make_ticket(demo_key(src, person), person, job, [month], DEFAULT_TICKET_MINUTES)

        follows = actions.admit_new_run(lambda: src.store, job, who, month, sign, note=note,
                                        home=src.settings.home).follows
        assert follows is not None  # an admitted run names its run
        src.submit_run(follows.job, {PARTITION_TAG: month, MONTH_TAG: month, **follows.tags()})

    return await _change(request, month, change)


@dataclass(frozen=True)
class Written:
    """An export the export store wrote: its result, the file name a browser saves, what its signature covers."""

    result: dict[str, Any]
    name: str
    media_type: str
    details: dict[str, Any]


def write_export(src: Sources, month: str, form: dict[str, str], folder: Path) -> Written:
    """A version (or the official copy, `version=final`), whole or filtered, written by the export store into
    `folder` (outside the home, as an export must be), as `batch-admin export` writes it."""
    fmt = form.get("format", "csv")
    if fmt not in FORMATS:
        raise ValueError(f"format is one of {', '.join(FORMATS)}, not {fmt!r}.")
    final = form.get("version") == "final"
    version = None if final or not form.get("version") else int(_number(form["version"], "version"))
    filters = {name: form.get(name) or None for name in ("service", "resource", "status")}
    result = src.exports.export(month, fmt=fmt, out=folder / f"export.{fmt}", version=version, final=final,
                                service=filters["service"], resource=filters["resource"], status=filters["status"])
    return Written(result, f"{month}_{'final' if final else 'v' + str(result['version'])}.{fmt}", FORMATS[fmt],
                   {k: str(v) for k, v in result.items()} | {"filters": filters})


async def export(request: Request) -> Response:
    """A version (or the official copy), whole or filtered, as CSV, XLSX or Parquet, through the export store;
    the export is recorded in the audit log, signed by the person signed in (as `batch-admin export`)."""
    month = check_month(request.path_params["month"])
    src: Sources = request.app.state.sources

    async def work(form: dict[str, str]) -> Response:
        who = _who(request)
        folder = Path(tempfile.mkdtemp(prefix="batch_view_export_"))
        try:
            written = await run_in_threadpool(_export, src, who, month, form, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return FileResponse(written.result["path"], media_type=written.media_type, filename=written.name,
                            background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))

    return await _posted(request, work)


def _export(src: Sources, who: str, month: str, form: dict[str, str], folder: Path) -> Written:
    signer = demo_signer(src, who)  # before writing anything: no key, no export
    actions.may(src.store, "export", who, month)
    written = write_export(src, month, form, folder)
    actions.record_export(src.store, signer("export", month, written.details))
    return written


async def _change(request: Request, month: str, change: Callable[[Sources, str, dict[str, str]], None]) -> Response:
    src: Sources = request.app.state.sources

    async def work(form: dict[str, str]) -> Response:
        await run_in_threadpool(change, src, _who(request), form)
        return RedirectResponse(f"/month/{month}", status_code=303)

    return await _posted(request, work)


def as_page(request: Request, status: int, message: str) -> Response:
    """A refusal as a page: one sentence."""
    problem: Problem = request.app.state.problem
    return problem(request, status, message)


def as_json(request: Request, status: int, message: str) -> Response:
    """A refusal as JSON, for the page's script (passkey.js)."""
    return JSONResponse({"error": message}, status_code=status)


async def _posted(request: Request, work: Callable[[dict[str, str]], Any], *, signed_in: bool = True,
                  refuse: Problem = as_page) -> Response:
    """The checks of every POST: origin, CSRF token and (unless signing in) the session; then the work. A
    refusal is one sentence rendered by `refuse`: 403 for the origin, token, session or a signature that does
    not stand, 400 for a rule."""
    try:
        form = await form_of(request)
        request.app.state.guard.check_post(request, form.get("csrf"))
        if signed_in:
            _who(request)
    except Refused as exc:
        return refuse(request, 403, str(exc))
    try:
        response: Response = await work(form)
        return response
    except (Refused, IdentityError, PasskeyError) as exc:
        return refuse(request, 403, str(exc))
    except REFUSALS as exc:
        return refuse(request, 400, str(exc))


def _who(request: Request) -> str:
    who = request.app.state.guard.signed_in(request)
    if who is None:
        raise Refused("Sign in first: a change is made by a person.")
    return who


def _back(form: dict[str, str]) -> str:
    """Where to go after signing in or out: a path of this view, else the months."""
    back = form.get("back", "/")
    return back if back.startswith("/") and not back.startswith("//") else "/"


def _number(text: str, field: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{field} must be a number, not {text!r}.") from None
