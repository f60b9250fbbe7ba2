"""Passkeys in the view: register one with a signed enrolment link, sign in with it, and sign changes with it.

Signing in (`POST /passkey/signin-challenge`, then `POST /passkey/signin`) proves who reads: the assertion of a
registered passkey over a fresh sealed challenge opens a session, which authorizes no change.

Every change the view offers (lock, release, run, parameters, pins and exclusions, finalize and unlock
requests, approvals and rejections, exports) is signed with a passkey in two steps. `POST /passkey/challenge` builds the signed action(s) the
change needs, exactly as the CLI would sign them (actor: the person signed in; a fresh server nonce and
time), and returns each one's canonical bytes with this server's MAC and the WebAuthn challenge (their
SHA-256). The browser's authenticator signs each; `POST /passkey/act` hands the signed actions to the
action layer (batch.actions), whose store verifies the passkey signature, the counter, the nonce, roles
and four eyes. The session only says whose passkeys to ask for: without a valid assertion nothing changes.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dagster_graphql import DagsterGraphQLClientError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response

from batch import actions
from batch.actions import changes
from batch.actions.signin import SIGN_IN_MINUTES, check_passkey_signed, sign_in_body, signed_in
from batch.enrolment import make_token
from batch.identity import (
    DEFAULT_TICKET_MINUTES,
    IdentityError,
    Signed,
    canonical,
    ticket_details,
)
from batch.months import check_month, check_planned_month
from batch.names import RP_ID_VAR
from batch.passkeys import (
    DEFAULT_RP_ID,
    ENROL_ACTION,
    ENROL_MINUTES,
    Assertion,
    PasskeyError,
    PasskeyKey,
    challenge_of,
    check_rp_id,
    verify_registration,
)
from batch.roles import MONTH_TAG
from batch_view.actions import DEFAULT_LOCK_HOURS, _back, _number, _posted, _who, as_json, demo_key, write_export
from batch_view.downloads import Downloads
from batch_view.session import Guard, Once, Refused, set_session
from batch_view.sources import PARTITION_TAG, Sources
from resources.control_store import passkey_store
from resources.settings import ORIGIN_VAR, view_origin

# A sign-in's nonce is remembered while its challenge could still be presented (and a little longer).
SIGN_IN_KEEP_SECONDS = 2 * 60 * SIGN_IN_MINUTES
SIGNED_ACTIONS = ("approve", "reject", "finalize", "unlock", "lock", "release", "run", "params", "adjust", "export")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def relying_party(request: Request) -> tuple[str, str]:
    """The RP id and origin passkeys are made and checked for: the deployment's (BATCH_ADMIN_RP_ID,
    BATCH_ADMIN_ORIGIN), else localhost and the view's own origin; a view opened elsewhere is refused."""
    rp_id = check_rp_id(os.environ.get(RP_ID_VAR) or DEFAULT_RP_ID)
    own = f"{request.url.scheme}://{request.url.netloc}"
    origin = os.environ.get(ORIGIN_VAR) or own
    if origin != own or request.url.hostname != rp_id:
        raise Refused(f"Passkeys work at {origin if os.environ.get(ORIGIN_VAR) else f'http://{rp_id}:PORT'} "
                      f"(RP id {rp_id}), not at {own}: open the view there.")
    return rp_id, origin


def _seal(guard: Guard, raw: bytes, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Bytes to sign, this server's MAC over them (and over what the change carries beside them: a run's
    note, an export's download), and the WebAuthn challenge (their SHA-256)."""
    text, extra = _b64(raw), extra or {}
    return {"body": text, "extra": extra, "mac": guard.seal("passkey", text + "|" + canonical(extra).decode()),
            "challenge": _b64(challenge_of(raw))}


def _unseal(guard: Guard, part: dict[str, Any]) -> tuple[bytes, str, dict[str, str]]:
    """Bytes this server prepared, back from the browser: them, the assertion's text, what they carry."""
    text, mac, extra = str(part.get("body") or ""), str(part.get("mac") or ""), part.get("extra") or {}
    if not isinstance(extra, dict) or not secrets.compare_digest(
            mac, guard.seal("passkey", text + "|" + canonical(extra).decode())):
        raise Refused("This signed action was not prepared by this view: refused.")
    credential = part.get("credential")
    if not isinstance(credential, dict):
        raise Refused("A passkey signature is missing: the change is made only with the person's passkey.")
    return _unb64(text), Assertion.from_browser(credential).text(), {str(k): str(v) for k, v in extra.items()}


def _body(who: str, action: str, month: str | None, details: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {"actor": who, "action": action, "month": month, "details": details, "at": now.isoformat(),
            "nonce": secrets.token_hex(16)}


@dataclass(frozen=True)
class Prepared:
    """The signed actions a change needs, unsigned, and what it carries beside them (a run's note, a download)."""

    bodies: list[dict[str, Any]]
    extra: dict[str, str] = field(default_factory=dict)


def prepare(src: Sources, downloads: Downloads, who: str, form: dict[str, str]) -> Prepared:
    """The signed actions a change needs, unsigned, as the CLI would sign them (batch_cli/commands/), after the
    action layer's checks that need no signature (role, inputs, locks), so a refusal comes before the prompt."""
    what = form.get("action", "")
    now = datetime.now(UTC)
    if what not in SIGNED_ACTIONS:
        raise Refused(f"action is one of {', '.join(SIGNED_ACTIONS)}, not {what!r}.")
    if what in ("approve", "reject"):
        return Prepared(_decision(src, who, what, form, now))
    if what == "run":
        month = check_planned_month(form.get("month", ""))
        job = actions.run_job_named(form.get("job"))  # execute_job, or plan_job for a preview
        ticket = _body(who, "ticket", None, ticket_details(job, [month], DEFAULT_TICKET_MINUTES, now), now)
        note = form.get("note", "").strip()
        actions.admit_run(src.store, Signed.from_dict({**ticket, "signature": ""}), month=month, note=note or None,
                          home=src.settings.home)  # the CLI's checks; the run verifies the signature as it claims it
        return Prepared([ticket], {"note": note})
    month = check_month(form.get("month", ""))
    if what == "export":
        return _export(src, downloads, who, month, form, now)
    actions.may(src.store, what, who, month)  # every other change's rule is named as its action
    if what == "finalize":
        version = int(_number(form.get("version", ""), "version"))
        details = actions.finalize_details(src.store, src.exports, month, version, form.get("note", ""))
        return Prepared([_body(who, "request", month, details, now)])
    if what == "unlock":
        return Prepared([_body(who, "request", month, actions.unlock_details(src.store, month,
                                                                              form.get("reason", "")), now)])
    if what == "params":
        value = form.get("value", "").strip()
        param = form.get("param", "")
        details = changes.params_details({param: value} if value else {}, [] if value else [param])
        return Prepared([_body(who, "params", month, details, now)])
    if what == "adjust":
        details = changes.adjust_details(form.get("kind", ""), form.get("request", ""), form.get("note", ""))
        return Prepared([_body(who, "adjust", month, details, now)])
    if what == "lock":
        names = [name.strip() for name in form.get("admins", "").split(",") if name.strip()]
        return Prepared([_body(who, "lock", month, {"admins": names, "ttl_hours": _number(
            form.get("ttl_hours") or str(DEFAULT_LOCK_HOURS), "ttl_hours")}, now)])
    return Prepared([_body(who, "release", month, {}, now)])


def _decision(src: Sources, who: str, what: str, form: dict[str, str], now: datetime) -> list[dict[str, Any]]:
    """An approval (with the run ticket it issues, when a job carries the request out) or a rejection."""
    request = src.store.request(form.get("request_id", ""))
    if what == "reject":
        return [_body(who, "reject", request.month, {"request_id": request.id, "reason": form.get("reason", "")}, now)]
    job = actions.ticket_job(request)
    if job is None:
        return [_body(who, "approve", request.month, actions.approval_details(request, None), now)]
    ticket = _body(who, "ticket", None, ticket_details(job, [str(request.month)], DEFAULT_TICKET_MINUTES, now,
                                                       request_id=request.id), now)
    unsigned = Signed.from_dict({**ticket, "signature": ""})
    return [ticket, _body(who, "approve", request.month, actions.approval_details(request, unsigned), now)]


def _export(src: Sources, downloads: Downloads, who: str, month: str, form: dict[str, str],
            now: datetime) -> Prepared:
    """An export is written first (what it signs is what was written, as in the CLI), held for its person
    until their passkey signed it; then it is audited and downloaded once (`GET /passkey/download/ID`)."""
    actions.may(src.store, "export", who, month)
    held = downloads.hold(who)
    try:
        written = write_export(src, month, form, held.folder)
    except BaseException:
        downloads.drop(held.id)
        raise
    downloads.ready(held.id, Path(written.result["path"]), written.name, written.media_type)
    return Prepared([_body(who, "export", month, written.details, now)], {"download": held.id})


def carry_out(src: Sources, downloads: Downloads, who: str, signed: list[Signed],
              extra: dict[str, str]) -> tuple[actions.Outcome, str]:
    """Hand the passkey-signed actions to the action layer, submit the Dagster job that follows, if any;
    the outcome and the page to show next."""
    last = signed[-1]
    if any(s.actor != who for s in signed):
        raise Refused("A change is signed by the person signed in.")
    outcome: actions.Outcome
    if last.action == "approve":
        tickets = [s for s in signed[:-1] if s.action == "ticket"]
        outcome = actions.approve(src.store, last, ticket=tickets[0] if tickets else None)
    elif last.action == "reject":
        outcome = actions.reject(src.store, last)
    elif last.action == "ticket":
        months = list(last.details.get("months") or [])
        if last.details.get("job") not in actions.RUN_JOBS or len(months) != 1:
            raise Refused("The view runs one month's execute_job or plan_job with a passkey-signed ticket.")
        with src.store.read() as conn:
            check_passkey_signed(last, passkey_store.credential(conn, Assertion.parse(last.signature).credential_id))
        outcome = actions.admit_run(src.store, last, month=months[0], note=extra.get("note") or None,
                                    home=src.settings.home)
    else:
        handlers: dict[str, Callable[[Signed], actions.Outcome]] = {
            "request": lambda s: actions.file_request(src.store, s, view_origin()), "lock": lambda s: actions.lock(src.store, s),
            "release": lambda s: actions.release(src.store, s),
            "params": lambda s: changes.set_params(src.store, s),
            "adjust": lambda s: changes.adjust(src.store, s, home=src.settings.home),
            "export": lambda s: _recorded(src, downloads, s, extra.get("download", ""))}
        if last.action not in handlers:
            raise Refused(f"The view does not sign {last.action!r} with a passkey.")
        outcome = handlers[last.action](last)
    if last.action == "export":
        return outcome, f"/passkey/download/{extra.get('download')}"
    return _submitted(src, outcome, last.action == "ticket"), (
        f"/month/{outcome.month}" if outcome.month and last.action not in ("approve", "reject") else "/approvals")


def _recorded(src: Sources, downloads: Downloads, signed: Signed, download: str) -> actions.Outcome:
    """Audit an export the person's passkey signed; its file is then theirs to download, once."""
    downloads.owned(download, signed.actor)
    outcome = actions.record_export(src.store, signed)
    downloads.release(download)
    return outcome


def _submitted(src: Sources, outcome: actions.Outcome, is_run: bool) -> actions.Outcome:
    """Submit the run that follows an outcome to the Dagster instance's queue (a run, or an approval's)."""
    follows = outcome.follows
    if follows is None:
        return outcome
    month_tags = {PARTITION_TAG: follows.month, MONTH_TAG: follows.month} if follows.month else {}
    try:
        src.submit_run(follows.job, {**month_tags, **follows.tags()}, follows.run_config)
    except (DagsterGraphQLClientError, OSError) as exc:
        if is_run:  # nothing was recorded: the run was only admitted
            raise Refused(f"The run of {follows.month} was not queued ({exc}); nothing changed.") from None
        # The approval stands (signed and recorded); only the run that carries it out was not queued.
        return replace(outcome, message=f"{outcome.message}; its {follows.job} run was not queued ({exc}): "
                                        f"`batch-admin repair {follows.month or ''}` carries it out.")
    return outcome


async def challenge(request: Request) -> Response:
    """The actions a change needs, each with its challenge, and the person's credentials to ask for."""
    src: Sources = request.app.state.sources
    guard: Guard = request.app.state.guard

    async def work(form: dict[str, str]) -> Response:
        rp_id, _origin = relying_party(request)
        who = _who(request)
        allow = [p["credential_id"] for p in await run_in_threadpool(src.store.passkeys) if p["person"] == who]
        if not allow:
            raise Refused(f"{who} has no passkey yet: register one on the People page.")
        ready = await run_in_threadpool(prepare, src, request.app.state.downloads, who, form)
        return JSONResponse({"rp_id": rp_id, "allow": allow,
                             "parts": [_seal(guard, canonical(body), ready.extra) for body in ready.bodies]})

    return await _posted(request, work, refuse=as_json)


async def act(request: Request) -> Response:
    """Carry out a change whose actions the person's passkey signed."""
    src: Sources = request.app.state.sources
    guard: Guard = request.app.state.guard

    async def work(form: dict[str, str]) -> Response:
        relying_party(request)
        who = _who(request)
        try:
            unsealed = [_unseal(guard, part) for part in json.loads(form.get("parts", ""))]
            signed = [Signed.from_dict({**json.loads(raw), "signature": text}) for raw, text, _extra in unsealed]
        except (ValueError, TypeError, AttributeError, binascii.Error):
            raise Refused("The signed actions do not decode.") from None
        if not signed:
            raise Refused("No signed action was sent.")
        outcome, back = await run_in_threadpool(carry_out, src, request.app.state.downloads, who, signed,
                                                unsealed[-1][2])
        return JSONResponse({"message": outcome.message, "redirect": back})

    return await _posted(request, work, refuse=as_json)


async def download(request: Request) -> Response:
    """An export the person's passkey signed and the audit recorded, once, to that person."""
    who = request.app.state.guard.signed_in(request)
    found = request.app.state.downloads.take(str(request.path_params["id"]), who)
    if found is None:
        return request.app.state.problem(request, 404, "No such download: an export is downloaded once, by the "
                                                       "person whose passkey signed it, within 10 minutes.")
    return FileResponse(found.path, media_type=found.media_type, filename=found.name,
                        background=BackgroundTask(shutil.rmtree, found.folder, ignore_errors=True))


async def enrol_page(request: Request) -> Response:
    """The page an enrolment link opens: whose passkey, until when, and the button that registers it."""
    token_text = request.query_params.get("token", "")
    try:
        rp_id, _origin = relying_party(request)
        token = Signed.decode(token_text)
        if token.action != ENROL_ACTION:
            raise Refused("This link is not a passkey enrolment link.")
    except (Refused, IdentityError, PasskeyError) as exc:
        return request.app.state.problem(request, 400, str(exc))
    options = {"rp": {"id": rp_id, "name": "Monthly batch admin"},
               "user": {"id": _b64(token.actor.encode()), "name": token.actor, "displayName": token.actor},
               "challenge": _b64(challenge_of(canonical(token.body())))}
    return request.app.state.render(request, "passkey_enroll.html", {
        "title": "Register a passkey", "person": token.actor, "expires_at": token.details.get("expires_at"),
        "token": token_text, "options": options, "minutes": ENROL_MINUTES})


async def enrol(request: Request) -> Response:
    """Register the passkey the browser made, for the person whose key signed the enrolment token."""
    src: Sources = request.app.state.sources

    async def work(form: dict[str, str]) -> Response:
        rp_id, origin = relying_party(request)
        token = Signed.decode(form.get("token", ""))
        try:
            credential = json.loads(form.get("credential", ""))
        except ValueError:
            raise Refused("The passkey's registration does not decode.") from None
        key: PasskeyKey = verify_registration(credential, canonical(token.body()), rp_id, origin)
        await run_in_threadpool(src.store.register_passkey, token, key)
        return JSONResponse({"message": f"A passkey is registered for {token.actor}.", "redirect": "/people"})

    return await _posted(request, work, signed_in=False, refuse=as_json)


async def demo_enrol(request: Request) -> Response:
    """On the demo: the enrolment link of the person signed in, signed with their shipped demo key."""
    src: Sources = request.app.state.sources

    async def work(form: dict[str, str]) -> Response:
        who = _who(request)
        token = make_token(demo_key(src, who), who)  # refused off the demo
        return RedirectResponse(f"/passkey/enroll?token={quote(token.encode())}", status_code=303)

    return await _posted(request, work)


async def sign_in_challenge(request: Request) -> Response:
    """A sign-in challenge: the bytes a passkey of this view signs to say who reads (no change)."""
    guard: Guard = request.app.state.guard

    async def work(form: dict[str, str]) -> Response:
        rp_id, origin = relying_party(request)
        raw = sign_in_body(origin, secrets.token_hex(16), datetime.now(UTC))
        return JSONResponse({"rp_id": rp_id, "allow": [], "parts": [_seal(guard, raw)]})

    return await _posted(request, work, signed_in=False, refuse=as_json)


async def sign_in(request: Request) -> Response:
    """Open a session (for reading) for the person whose registered passkey signed a sign-in challenge."""
    src: Sources = request.app.state.sources
    guard: Guard = request.app.state.guard
    once: Once = request.app.state.sign_ins

    async def work(form: dict[str, str]) -> Response:
        relying_party(request)
        try:
            raw, text, _extra = _unseal(guard, json.loads(form.get("parts", ""))[0])
            nonce = str(json.loads(raw)["nonce"])
        except (ValueError, TypeError, AttributeError, KeyError, IndexError, binascii.Error):
            raise Refused("The sign-in does not decode.") from None
        who = await run_in_threadpool(_signed_in, src, raw, text)
        if not once.first_use(nonce):
            raise Refused("This sign-in was used before (a replay): refused.")
        response = JSONResponse({"message": f"Signed in as {who}.", "redirect": _back(form)})
        set_session(response, guard, who)
        return response

    return await _posted(request, work, signed_in=False, refuse=as_json)


def _signed_in(src: Sources, raw: bytes, text: str) -> str:
    with src.store.read() as conn:
        found = passkey_store.credential(conn, Assertion.parse(text).credential_id)
    return signed_in(src.store, raw, text, found)

