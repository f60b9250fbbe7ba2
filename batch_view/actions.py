"""The view's changes, for the embedded default's demo people: sign in and out, lock and release a month,
run it, export a version. Each is a signed action, signed by the server with the shipped demo key of the person
signed in, handed to the same action-layer functions the CLI calls (batch.actions); their rules (roles,
locks, final locks, ttl, export targets) are theirs, and a refusal changes nothing.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dagster_graphql import DagsterGraphQLClientError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

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
from batch.lifecycle import EXECUTE_JOB
from batch.months import MonthError, check_month, check_planned_month
from batch.roles import MONTH_TAG, RoleError
from batch_view.session import Refused, form_of, set_session
from batch_view.sources import PARTITION_TAG, Sources
from resources.storage import ExportError

REFUSALS = (DagsterGraphQLClientError, Refused, ControlError, RoleError, IdentityError, MonthError, ExportError, LookupError, ValueError)
FORMATS = {"csv": "text/csv", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
           "parquet": "application/vnd.apache.parquet"}
DEFAULT_LOCK_HOURS = 8.0

Problem = Callable[[Request, int, str], Response]


def demo_signer(src: Sources, who: str) -> Callable[[str, str | None, dict[str, Any]], Signed]:
    """Signs `who`'s actions with their shipped demo key: the embedded default with the shipped roles only."""
    if not src.demo:
        raise Refused("Signing in with the demo keys works only on the embedded default with the shipped roles "
                      "file; this deployment acts through the batch-admin CLI with each person's own key.")
    key = load_private_key(who, str(DEMO_KEYS_DIR / f"{who}.key"))
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
        demo_signer(src, who)  # refused off the demo, and for a name without a demo key
        src.store.roles().require_known(who, "sign in")
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
        actions.may_run(lambda: src.store, EXECUTE_JOB, who, month, home=src.settings.home)
        demo_signer(src, who)  # refused off the demo
        key = load_private_key(who, str(DEMO_KEYS_DIR / f"{who}.key"))
        ticket = make_ticket(key, who, EXECUTE_JOB, [month], DEFAULT_TICKET_MINUTES)
        follows = actions.admit_run(src.store, ticket, month=month, note=note).follows
        assert follows is not None  # an admitted run names its run
        src.submit_run(follows.job, {PARTITION_TAG: month, MONTH_TAG: month, **follows.tags()})

    return await _change(request, month, change)


async def export(request: Request) -> Response:
    """A version (or the official copy), whole or filtered, as CSV, XLSX or Parquet, through the export store;
    the export is recorded in the audit log, signed by the person signed in (as `batch-admin export`)."""
    month = check_month(request.path_params["month"])
    src: Sources = request.app.state.sources

    async def work(form: dict[str, str]) -> Response:
        who = _who(request)
        fmt = form.get("format", "csv")
        if fmt not in FORMATS:
            raise Refused(f"format is one of {', '.join(FORMATS)}, not {fmt!r}.")
        final = form.get("version") == "final"
        version = None if final or not form.get("version") else int(_number(form["version"], "version"))
        folder = Path(tempfile.mkdtemp(prefix="batch_view_export_"))  # outside the home, as an export must be
        try:
            result = await run_in_threadpool(_export, src, who, month, fmt, folder, version, final, form)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        name = f"{month}_{'final' if final else 'v' + str(result['version'])}.{fmt}"
        return FileResponse(result["path"], media_type=FORMATS[fmt], filename=name,
                            background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))

    return await _posted(request, work)


def _export(src: Sources, who: str, month: str, fmt: str, folder: Path, version: int | None, final: bool,
            form: dict[str, str]) -> dict[str, Any]:
    signer = demo_signer(src, who)  # before writing anything: no key, no export
    actions.may(src.store, "export", who, month)
    filters = {name: form.get(name) or None for name in ("service", "resource", "status")}
    result = src.exports.export(month, fmt=fmt, out=folder / f"export.{fmt}", version=version, final=final,
                                service=filters["service"], resource=filters["resource"], status=filters["status"])
    actions.record_export(src.store, signer("export", month, {k: str(v) for k, v in result.items()} | {"filters": filters}))
    return result


async def _change(request: Request, month: str, change: Callable[[Sources, str, dict[str, str]], None]) -> Response:
    src: Sources = request.app.state.sources

    async def work(form: dict[str, str]) -> Response:
        await run_in_threadpool(change, src, _who(request), form)
        return RedirectResponse(f"/month/{month}", status_code=303)

    return await _posted(request, work)


async def _posted(request: Request, work: Callable[[dict[str, str]], Any], signed_in: bool = True) -> Response:
    """Check origin, CSRF token and (unless signing in) the session, then do the work; a refusal is one
    sentence on a page, with status 400 (403 for the origin, token or session)."""
    problem: Problem = request.app.state.problem
    try:
        form = await form_of(request)
        request.app.state.guard.check_post(request, form.get("csrf"))
        if signed_in:
            _who(request)
    except Refused as exc:
        return problem(request, 403, str(exc))
    try:
        return await work(form)
    except REFUSALS as exc:
        return problem(request, 400, str(exc))


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
