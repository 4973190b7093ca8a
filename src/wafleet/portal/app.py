"""The portal application factory. ``create_app(settings)`` has no side effects beyond
building objects: connections open lazily and close at lifespan shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jinja2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wafleet.config import Settings
from wafleet.db.engine import Database
from wafleet.http_limits import BodyLimitMiddleware, MiB
from wafleet.logging import get_logger
from wafleet.portal.auth import SessionCodec, SessionCookieMiddleware
from wafleet.portal.context import PortalContext, csrf_protect, render, utc_now
from wafleet.portal.cp_client import ControlPlaneClient
from wafleet.portal.csrf import CsrfError
from wafleet.portal.errors import LoginRequired, PortalError
from wafleet.portal.ratelimit import LoginLimiter
from wafleet.portal.routes import admin, api, auth_pages, logs, settings_page, status

HERE = Path(__file__).parent
# The largest body is the settings form: a rules document of up to 1 M characters,
# which form encoding can triple.
MAX_BODY_BYTES = 4 * MiB
log = get_logger("wafleet.portal")

# Scripts and styles only from our own static files; images from data: URIs (QR codes).
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                h.setdefault("content-security-policy", CSP)
                h.setdefault("x-content-type-options", "nosniff")
                h.setdefault("referrer-policy", "same-origin")
                h.setdefault("x-frame-options", "DENY")
                if not static:
                    h.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, send_headers)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error(request: Request, status: int, code: str, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
    try:
        return render(request, "error.html", status_code=status, code=code, message=message)
    except Exception:  # the error page itself failed (e.g. templates missing): plain text
        return Response(f"{status}: {message}\n", status_code=status, media_type="text/plain")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PortalError)
    async def portal_error(request: Request, exc: PortalError) -> Response:
        if isinstance(exc, LoginRequired) and not _wants_json(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return _error(request, exc.status, exc.code, exc.message)

    @app.exception_handler(CsrfError)
    async def csrf_error(request: Request, exc: CsrfError) -> Response:
        return _error(request, 403, "csrf_failed", str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body")]
        msg = str(first.get("msg", "invalid input"))
        return _error(request, 422, "invalid_input", f"{'.'.join(loc) or 'input'}: {msg}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return _error(
            request, exc.status_code, codes.get(exc.status_code, "error"), str(exc.detail)
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("portal.unhandled", path=request.url.path, error=repr(exc), exc_info=exc)
        return _error(request, 500, "internal_error", "something went wrong on our side")


def _check_csrf_everywhere(router: Any) -> None:
    """Refuse to build an app with a state-changing route that skips the CSRF check.
    Walks included routers too (FastAPI keeps them as nested router objects)."""
    for route in getattr(router, "routes", ()):
        nested = getattr(route, "original_router", None)
        if nested is not None:
            _check_csrf_everywhere(nested)
        elif isinstance(route, APIRoute) and (route.methods or set()) - {"GET", "HEAD", "OPTIONS"}:
            calls = {d.call for d in route.dependant.dependencies}
            if csrf_protect not in calls:
                raise RuntimeError(f"portal route {route.path} lacks the CSRF check")


def create_app(
    settings: Settings,
    *,
    cp_transport: httpx.AsyncBaseTransport | None = None,
    now: Callable[[], datetime] = utc_now,
    limiter: LoginLimiter | None = None,
    poll_interval: float = 1.0,
    heartbeat_interval: float = 15.0,
) -> FastAPI:
    """The portal. Needs the portal key (``settings.resolve_portal_key()`` raises
    ConfigError without one) and the shared database URL; talks to
    ``settings.control_plane_url``."""
    portal_key = settings.resolve_portal_key()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template is HTML: escape everything not marked safe
        undefined=jinja2.StrictUndefined,
    )
    templates = Jinja2Templates(env=env)
    db = Database(settings.database_url)
    cp = ControlPlaneClient(settings.control_plane_url, portal_key, transport=cp_transport)
    ctx = PortalContext(
        settings=settings,
        db=db,
        cp=cp,
        # not `limiter or ...`: an empty LoginLimiter has len() 0, so it is falsy
        limiter=limiter if limiter is not None else LoginLimiter(),
        templates=templates,
        now=now,
        poll_interval=poll_interval,
        heartbeat_interval=heartbeat_interval,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            ctx.stopping.set()
            await cp.aclose()
            await db.close()

    app = FastAPI(
        title="wafleet portal", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.portal = ctx
    for module in (auth_pages, status, logs, settings_page, admin, api):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    _install_error_handlers(app)
    _check_csrf_everywhere(app.router)
    app.add_middleware(SessionCookieMiddleware, codec=SessionCodec(portal_key))
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    return app


def portal_context(app: Any) -> PortalContext:
    ctx: PortalContext = app.state.portal
    return ctx
