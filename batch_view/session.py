"""Sessions, CSRF tokens and the Origin check of the view's forms.

A session cookie names who is signed in (HMAC-signed with a secret of this server process, so a
restart signs everybody out); it is HttpOnly and SameSite=Strict. Every form carries a CSRF token
bound to a per-browser cookie, and a POST must come from the view's own origin. A session is opened
by a passkey's sign-in assertion (batch_view.passkey_views), or on the embedded default by naming a
demo person. It is for reading: it says who reads and whose passkeys to ask for, and never authorizes
a change by itself; a change is a passkey assertion over its signed action, or, on the demo only and
for a demo person without a passkey, signed by the server with the shipped demo key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

SESSION_COOKIE = "batch_admin_session"
CSRF_COOKIE = "batch_admin_csrf"
CSRF_FIELD = "csrf"
SESSION_HOURS = 8
MAX_FORM_BYTES = 64 * 1024


class Refused(Exception):
    """A request the view refuses before anything changes; str() is one sentence."""


@dataclass(frozen=True)
class Guard:
    """Signs and checks this server's cookies and CSRF tokens."""

    secret: bytes

    @classmethod
    def fresh(cls) -> Guard:
        return cls(secrets.token_bytes(32))

    def _mac(self, *parts: str) -> str:
        return hmac.new(self.secret, "|".join(parts).encode(), hashlib.sha256).hexdigest()

    def seal(self, purpose: str, value: str) -> str:
        """This server's MAC of `value` for `purpose` (e.g. a signed action it prepared for a passkey)."""
        return self._mac(purpose, value)

    def session_value(self, who: str) -> str:
        return f"{who}.{self._mac('session', who)}"

    def signed_in(self, request: Request) -> str | None:
        """Who the session cookie names, when this server signed it; else None."""
        value = request.cookies.get(SESSION_COOKIE, "")
        who, _, mac = value.rpartition(".")
        return who if who and hmac.compare_digest(mac, self._mac("session", who)) else None

    def browser_id(self, request: Request) -> str:
        """The per-browser value CSRF tokens are bound to (set by remember_browser on the first page)."""
        return request.cookies.get(CSRF_COOKIE) or ""

    def csrf_token(self, request: Request, browser: str | None = None) -> str:
        return self._mac("csrf", browser if browser is not None else self.browser_id(request))

    def check_post(self, request: Request, form_token: str | None) -> None:
        """Refuse a POST from another origin or without this browser's CSRF token."""
        origin = request.headers.get("origin")
        own = f"{request.url.scheme}://{request.url.netloc}"
        if origin != own:
            raise Refused(f"A change must come from this view's own page ({own}), not from {origin or 'no origin'}.")
        browser = self.browser_id(request)
        if not browser or not form_token or not hmac.compare_digest(form_token, self.csrf_token(request, browser)):
            raise Refused("The form's CSRF token is missing or not this browser's: reload the page and try again.")


def browser_of(request: Request) -> tuple[str, bool]:
    """This browser's CSRF cookie value, and whether it is new (then remember_browser sets it)."""
    found = request.cookies.get(CSRF_COOKIE)
    return (found, False) if found else (secrets.token_hex(16), True)


def remember_browser(response: Response, browser: str) -> None:
    """Give a browser its CSRF cookie on its first page."""
    response.set_cookie(CSRF_COOKIE, browser, httponly=True, samesite="strict", path="/")


async def form_of(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (the last value of each), at most MAX_FORM_BYTES."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise Refused("A form is sent as application/x-www-form-urlencoded.")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Refused(f"A form is at most {MAX_FORM_BYTES:,} bytes.")
    return {key: values[-1] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}


def set_session(response: Response, guard: Guard, who: str | None) -> None:
    """Sign `who` in (a session cookie), or out (None)."""
    if who is None:
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    else:
        response.set_cookie(SESSION_COOKIE, guard.session_value(who), max_age=SESSION_HOURS * 3600, httponly=True,
                            samesite="strict", path="/")


class Once:
    """Nonces this server process accepted (a passkey sign-in's): each is accepted once, kept while it could
    still be presented (a sealed challenge dies with the process's secret, so memory is enough)."""

    def __init__(self, keep_seconds: float) -> None:
        self.keep_seconds = keep_seconds
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_use(self, nonce: str) -> bool:
        """True the first time `nonce` is presented, False after."""
        now = time.monotonic()
        with self._lock:
            self._seen = {key: at for key, at in self._seen.items() if now - at < self.keep_seconds}
            if nonce in self._seen:
                return False
            self._seen[nonce] = now
            return True
