"""The Monthly batch admin view: a Starlette application whose every page is a template over a context,
and the same context as JSON when the path ends in `.json` (Datasette's way)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from batch.errors import ControlError
from batch.formats import format_change, format_count, format_figure
from batch.inputs import InputError
from batch.months import MonthError, check_month
from batch.report import VersionView, version_view
from batch.roles import RoleError
from batch_view import actions, context, passkey_views
from batch_view.downloads import Downloads
from batch_view.memo import Memo, month_state
from batch_view.session import Guard, Once, browser_of, remember_browser
from batch_view.sources import Sources
from resources.storage import ExportError

HERE = Path(__file__).resolve().parent
# No inline or external scripts or styles: htmx and the style sheet are served from the view itself.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY")]
NOT_FOUND = (LookupError, MonthError, FileNotFoundError)
REFUSED = (ControlError, RoleError, InputError, ExportError, ValueError)

Build = Callable[[Sources, Request], dict[str, Any]]


class SecurityHeaders:
    """Adds the Content-Security-Policy and its companions to every response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.filters["figure"] = lambda value, name: format_figure(name, value)
    env.filters["count"] = format_count
    env.filters["change"] = lambda value, name: format_change(name, value)
    env.filters["when"] = lambda value: "–" if not value else (
        value.strftime("%Y-%m-%d %H:%M UTC") if hasattr(value, "strftime") else str(value)[:16].replace("T", " "))
    env.filters["words"] = lambda value: str(value).replace("_", " ")
    return templates


def page(template: str, build: Build) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint rendering `template` over build()'s context, or that context as JSON for a `.json` path."""

    async def endpoint(request: Request) -> Response:
        src: Sources = request.app.state.sources
        as_json = request.url.path.endswith(".json")
        try:
            found = await run_in_threadpool(build, src, request)
        except NOT_FOUND as exc:
            return _problem(request, 404, str(exc), as_json)
        except REFUSED as exc:
            return _problem(request, 400, str(exc), as_json)
        if as_json:
            return JSONResponse(context.plain(found))
        return _render(request, template, found)

    return endpoint


def _render(request: Request, template: str, found: dict[str, Any], status: int = 200) -> Response:
    """A template over a page's context and what every page shows: who is signed in, the forms' CSRF token."""
    src: Sources = request.app.state.sources
    guard: Guard = request.app.state.guard
    browser, new = browser_of(request)
    who = guard.signed_in(request)
    response = request.app.state.templates.TemplateResponse(request, template, {
        "c": found, "dagster_url": src.dagster.base, "demo": src.demo, "who": who,
        "csrf": guard.csrf_token(request, browser), "demo_people": _demo_people(request) if src.demo else [],
        "here": request.url.path, "has_passkey": bool(who) and any(
            p["person"] == who for p in src.store.passkeys()) if template == "month.html" else False,
        "json_url": request.url.path.rstrip("/") + (".json" if request.url.path != "/" else "index.json")},
        status_code=status)
    if new:
        remember_browser(response, browser)
    return response


def _demo_people(request: Request) -> list[str]:
    """Who may sign in on the demo, kept while the audit chain's head stays (accepting roles appends an entry):
    reading and parsing the accepted roles costs ~15 ms a page."""
    src: Sources = request.app.state.sources
    return request.app.state.memo.get(("demo_people", src.store.audit_anchor()["last_hash"]),
                                      lambda: actions.demo_people(src))


def _problem(request: Request, status: int, message: str, as_json: bool = False) -> Response:
    if as_json:
        return JSONResponse({"error": message}, status_code=status)
    title = {404: "Not found", 403: "Not allowed"}.get(status, "Refused")
    return _render(request, "problem.html", {"title": title, "message": message}, status)


def _month(request: Request) -> str:
    return str(request.path_params["month"]).removesuffix(".json")


def _int(request: Request, name: str) -> int:
    raw = request.query_params.get(name) or str(request.path_params.get(name, ""))
    try:
        return int(raw.removesuffix(".json"))
    except ValueError:
        raise ValueError(f"{name} must be a version number, not {raw!r}.") from None


def _months(src: Sources, request: Request) -> dict[str, Any]:
    return context.months_context(src)


def _diff(src: Sources, request: Request) -> dict[str, Any]:
    return context.diff_context(src, _month(request), _int(request, "from"), _int(request, "to"))


def _report(src: Sources, request: Request) -> dict[str, Any]:
    return context.report_context(cached_view(src, request.app.state.memo, check_month(_month(request)),
                                              _int(request, "version")))


def cached_view(src: Sources, memo: Memo, month: str, version: int) -> VersionView:
    """A version's report view with its charts rendered (matplotlib: 0.1-0.3 s a chart), kept while the month
    is unchanged (batch_view.memo)."""

    def compute() -> VersionView:
        if version not in src.exports.versions(month):
            raise LookupError(f"Month {month} has no version {version}.")
        view = version_view(src.store, src.exports, month, version)
        view.charts()
        return view

    return memo.get(("report", version, month_state(src, month)), compute)


async def chart(request: Request) -> Response:
    """One chart of a version's report as PNG, the same image as the report and the Dagster metadata."""
    src: Sources = request.app.state.sources
    name = str(request.path_params["name"])
    try:
        month = check_month(_month(request))
        view = await run_in_threadpool(cached_view, src, request.app.state.memo, month, _int(request, "version"))
    except (*NOT_FOUND, *REFUSED) as exc:
        return Response(str(exc), status_code=404, media_type="text/plain")
    charts = {made.name: made.png for made in view.charts()}
    if name not in charts:
        return Response(f"Version {view.version} has no chart {name!r}.", status_code=404, media_type="text/plain")
    return Response(charts[name], media_type="image/png", headers={"cache-control": "private, max-age=60"})


def routes() -> list[Route | Mount]:
    """Every page twice (HTML and `.json`), the charts, the fragments htmx loads, and the static files."""
    pages: list[tuple[str, str, Build]] = [
        ("/", "months.html", _months),
        ("/index.json", "months.html", _months),
        ("/approvals", "approvals.html", lambda src, request: context.approvals_context(src)),
        ("/people", "people.html", lambda src, request: context.people_context(src)),
        ("/month/{month}", "month.html",
         lambda src, request: context.month_context(src, _month(request), request.app.state.memo)),
        ("/month/{month}/diff", "diff.html", _diff),
        ("/month/{month}/report/{version}", "report.html", _report),
        ("/month/{month}/audit", "audit_check.html",
         lambda src, request: context.audit_check_context(src, _month(request))),
        ("/fragment/months", "months_rows.html", _months),
    ]
    found: list[Route | Mount] = []
    for path, template, build in pages:
        endpoint = page(template, build)
        found.append(Route(path, endpoint))
        if not path.endswith((".json", "}")) and path != "/":
            found.append(Route(path + ".json", endpoint))
    found.append(Route("/month/{month}/chart/{version}/{name}.png", chart))
    found += [Route("/signin", actions.sign_in, methods=["POST"]), Route("/signout", actions.sign_out, methods=["POST"]),
              Route("/month/{month}/lock", actions.lock, methods=["POST"]),
              Route("/month/{month}/release", actions.release, methods=["POST"]),
              Route("/month/{month}/run", actions.run, methods=["POST"]),
              Route("/month/{month}/export", actions.export, methods=["POST"]),
              Route("/passkey/enroll", passkey_views.enrol_page), Route("/passkey/enroll", passkey_views.enrol, methods=["POST"]),
              Route("/passkey/demo-enroll", passkey_views.demo_enrol, methods=["POST"]),
              Route("/passkey/challenge", passkey_views.challenge, methods=["POST"]),
              Route("/passkey/act", passkey_views.act, methods=["POST"]),
              Route("/passkey/download/{id}", passkey_views.download),
              Route("/passkey/signin-challenge", passkey_views.sign_in_challenge, methods=["POST"]),
              Route("/passkey/signin", passkey_views.sign_in, methods=["POST"])]
    found.append(Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"))
    return found


def create_app(sources: Sources) -> Starlette:
    """The view over one deployment's stores."""
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        sources.close()

    app = Starlette(routes=routes(), middleware=[Middleware(SecurityHeaders)], lifespan=lifespan)
    app.state.sources = sources
    app.state.templates = make_templates()
    app.state.memo = Memo()
    app.state.guard = Guard.fresh()
    app.state.downloads = Downloads()
    app.state.sign_ins = Once(passkey_views.SIGN_IN_KEEP_SECONDS)
    app.state.problem = _problem
    app.state.render = _render
    return app
