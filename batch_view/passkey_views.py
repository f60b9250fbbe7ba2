"""Passkeys in the view: register one with a signed enrolment link, and sign changes with it.

A change signed with a passkey takes two steps. `POST /passkey/challenge` builds the signed action(s) the
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
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from dagster_graphql import DagsterGraphQLClientError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from batch import actions
from batch.enrolment import make_token
from batch.identity import (
    DEFAULT_TICKET_MINUTES,
    DEMO_KEYS_DIR,
    IdentityError,
    Signed,
    canonical,
    load_private_key,
    ticket_details,
)
from batch.months import check_month
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
from batch_view.actions import REFUSALS, _number, _posted, _who, demo_signer
from batch_view.session import Guard, Refused, form_of
from batch_view.sources import PARTITION_TAG, Sources

RP_ID_VAR = "BATCH_ADMIN_RP_ID"
ORIGIN_VAR = "BATCH_ADMIN_ORIGIN"
SIGNED_ACTIONS = ("approve", "reject", "finalize", "unlock", "lock", "release")
PASSKEY_REFUSALS = (*REFUSALS, PasskeyError)


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


def _seal(guard: Guard, body: dict[str, Any]) -> dict[str, str]:
    """A prepared action's bytes, this server's MAC over them, and the WebAuthn challenge."""
    raw = canonical(body)
    text = _b64(raw)
    return {"body": text, "mac": guard.seal("passkey", text), "challenge": _b64(challenge_of(raw))}


def _unseal(guard: Guard, part: dict[str, Any]) -> Signed:
    """A prepared action, back from the browser with its assertion, as a signed action."""
    text, mac = str(part.get("body") or ""), str(part.get("mac") or "")
    if not secrets.compare_digest(mac, guard.seal("passkey", text)):
        raise Refused("This signed action was not prepared by this view: refused.")
    body = json.loads(_unb64(text))
    credential = part.get("credential")
    if not isinstance(credential, dict):
        raise Refused("A passkey signature is missing: the change is made only with the person's passkey.")
    return Signed.from_dict({**body, "signature": Assertion.from_browser(credential).text()})


def _body(who: str, action: str, month: str | None, details: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {"actor": who, "action": action, "month": month, "details": details, "at": now.isoformat(),
            "nonce": secrets.token_hex(16)}


def prepare(src: Sources, who: str, form: dict[str, str]) -> list[dict[str, Any]]:
    """The signed actions a change needs, unsigned, as the CLI would sign them (batch_cli/main.py)."""
    what = form.get("action", "")
    now = datetime.now(UTC)
    if what not in SIGNED_ACTIONS:
        raise Refused(f"action is one of {', '.join(SIGNED_ACTIONS)}, not {what!r}.")
    if what in ("approve", "reject"):
        request = src.store.request(form.get("request_id", ""))
        if what == "reject":
            return [_body(who, "reject", request.month, {"request_id": request.id, "reason": form.get("reason", "")},
                          now)]
        job = actions.ticket_job(request)
        ticket = None
        parts = []
        if job is not None:
            ticket = _body(who, "ticket", None, ticket_details(job, [str(request.month)], DEFAULT_TICKET_MINUTES, now,
                                                               request_id=request.id), now)
            parts.append(ticket)
        unsigned = Signed.from_dict({**ticket, "signature": ""}) if ticket else None
        return [*parts, _body(who, "approve", request.month, actions.approval_details(request, unsigned), now)]
    month = check_month(form.get("month", ""))
    if what == "finalize":
        version = int(_number(form.get("version", ""), "version"))
        details = actions.finalize_details(src.store, src.exports, month, version, form.get("note", ""))
        return [_body(who, "request", month, details, now)]
    if what == "unlock":
        return [_body(who, "request", month, actions.unlock_details(src.store, month, form.get("reason", "")), now)]
    if what == "lock":
        names = [name.strip() for name in form.get("admins", "").split(",") if name.strip()]
        return [_body(who, "lock", month, {"admins": names, "ttl_hours": _number(form.get("ttl_hours") or "8",
                                                                                  "ttl_hours")}, now)]
    return [_body(who, "release", month, {}, now)]


def carry_out(src: Sources, who: str, signed: list[Signed]) -> actions.Outcome:
    """Hand the passkey-signed actions to the action layer; submit the Dagster job that follows, if any."""
    last = signed[-1]
    if last.actor != who or any(s.actor != who for s in signed):
        raise Refused("A change is signed by the person signed in.")
    outcome: actions.Outcome
    if last.action == "approve":
        tickets = [s for s in signed[:-1] if s.action == "ticket"]
        outcome = actions.approve(src.store, last, ticket=tickets[0] if tickets else None)
    elif last.action == "reject":
        outcome = actions.reject(src.store, last)
    elif last.action == "request":
        outcome = actions.file_request(src.store, last)
    elif last.action == "lock":
        outcome = actions.lock(src.store, last)
    elif last.action == "release":
        outcome = actions.release(src.store, last)
    else:
        raise Refused(f"The view does not sign {last.action!r} with a passkey.")
    follows = outcome.follows
    if follows is not None:
        month_tags = {PARTITION_TAG: follows.month, MONTH_TAG: follows.month} if follows.month else {}
        try:
            src.submit_run(follows.job, {**month_tags, **follows.tags()}, follows.run_config)
        except (DagsterGraphQLClientError, OSError) as exc:
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
        parts = await run_in_threadpool(prepare, src, who, form)
        allow = [p["credential_id"] for p in await run_in_threadpool(src.store.passkeys) if p["person"] == who]
        if not allow:
            raise Refused(f"{who} has no passkey yet: register one on the People page.")
        return JSONResponse({"rp_id": rp_id, "allow": allow, "parts": [_seal(guard, part) for part in parts]})

    return await _json(request, work)


async def act(request: Request) -> Response:
    """Carry out a change whose actions the person's passkey signed."""
    src: Sources = request.app.state.sources
    guard: Guard = request.app.state.guard

    async def work(form: dict[str, str]) -> Response:
        relying_party(request)
        who = _who(request)
        try:
            parts = json.loads(form.get("parts", ""))
            signed = [_unseal(guard, part) for part in parts]
        except (ValueError, TypeError, AttributeError, binascii.Error):
            raise Refused("The signed actions do not decode.") from None
        if not signed:
            raise Refused("No signed action was sent.")
        outcome = await run_in_threadpool(carry_out, src, who, signed)
        back = f"/month/{outcome.month}" if outcome.month and signed[-1].action not in ("approve", "reject") \
            else "/approvals"
        return JSONResponse({"message": outcome.message, "redirect": back})

    return await _json(request, work)


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

    return await _json(request, work, signed_in=False)


async def demo_enrol(request: Request) -> Response:
    """On the demo: the enrolment link of the person signed in, signed with their shipped demo key."""
    src: Sources = request.app.state.sources

    async def work(form: dict[str, str]) -> Response:
        who = _who(request)
        demo_signer(src, who)  # refused off the demo
        token = make_token(load_private_key(who, str(DEMO_KEYS_DIR / f"{who}.key")), who)
        return RedirectResponse(f"/passkey/enroll?token={quote(token.encode())}", status_code=303)

    return await _posted(request, work)


async def _json(request: Request, work: Callable[[dict[str, str]], Any], signed_in: bool = True) -> Response:
    """The checks of every change (origin, CSRF token, and the session naming whose passkey), then the work;
    a refusal is one sentence as JSON for the page's script (403 for identity, 400 for a rule)."""
    try:
        form = await form_of(request)
        request.app.state.guard.check_post(request, form.get("csrf"))
        if signed_in:
            _who(request)
    except Refused as exc:
        return JSONResponse({"error": str(exc)}, status_code=403)
    try:
        response: Response = await work(form)
        return response
    except (Refused, IdentityError, PasskeyError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=403)
    except PASSKEY_REFUSALS as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
