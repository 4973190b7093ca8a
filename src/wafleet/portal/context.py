"""The portal's per-process state (one `PortalContext` per app) and the request-level
helpers every route uses: current user, tenant choice, rendering, CSRF."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import HTMLResponse

from wafleet.config import Settings
from wafleet.db.engine import Database
from wafleet.db.repositories import SLUG_RE
from wafleet.portal.auth import CurrentUser, load_user, session_holder
from wafleet.portal.cp_client import ControlPlaneClient
from wafleet.portal.csrf import check_csrf, new_token
from wafleet.portal.errors import LoginRequired, PortalError
from wafleet.portal.ratelimit import LoginLimiter


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class PortalContext:
    settings: Settings
    db: Database
    cp: ControlPlaneClient
    limiter: LoginLimiter
    templates: Jinja2Templates
    now: Callable[[], datetime] = utc_now
    poll_interval: float = 1.0
    heartbeat_interval: float = 15.0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    open_streams: int = 0
    # tenant → (expires, hourly buckets, partial); see routes/status.load_hourly
    chart_cache: dict[str, Any] = field(default_factory=dict)

    @property
    def simulator_page_url(self) -> str | None:
        """The simulator's phone page, derived from ``WAFLEET_SIMULATOR_URL``
        (ws://host:port/ws → http://host:port/), when the engine is the simulator."""
        if self.settings.engine != "simulator":
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(self.settings.simulator_url)
        scheme = "https" if parts.scheme == "wss" else "http"
        return f"{scheme}://{parts.netloc}/"


def get_ctx(request: Request) -> PortalContext:
    ctx: PortalContext = request.app.state.portal
    return ctx


async def current_user(request: Request) -> CurrentUser:
    """The logged-in user (re-read from the database), else `LoginRequired`."""
    holder = session_holder(request)
    email = holder.session.email if holder.session else None
    if not email:
        raise LoginRequired()
    try:
        user = await load_user(get_ctx(request).db, email)
    except SQLAlchemyError:
        raise PortalError(503, "database_unavailable", "the database is unavailable") from None
    if user is None:
        holder.logout(new_token())  # account deleted: end the session
        raise LoginRequired()
    return user


async def csrf_protect(request: Request) -> None:
    """Dependency of every POST route (see app.py, which checks that none is missing)."""
    holder = session_holder(request)
    await check_csrf(request, holder.session.csrf if holder.session else None)


def pick_tenant(user: CurrentUser, requested: str | None) -> str | None:
    """The tenant a page is about: ``?tenant=SLUG`` when given (the control plane checks
    membership), else the user's first tenant; None for a user with no tenant."""
    if requested:
        if not SLUG_RE.match(requested):
            raise PortalError(
                422, "invalid_tenant", f"tenant: {requested[:64]!r} is not a valid slug"
            )
        return requested
    return user.tenants[0] if user.tenants else None


def tenant_params(tenant: str | None, **extra: Any) -> dict[str, Any]:
    params = {k: v for k, v in extra.items() if v is not None and v != ""}
    if tenant:
        params["tenant"] = tenant
    return params


def with_query(path: str, **params: Any) -> str:
    clean = {k: v for k, v in params.items() if v is not None and v != ""}
    return f"{path}?{urlencode(clean)}" if clean else path


def render(
    request: Request,
    template: str,
    *,
    user: CurrentUser | None = None,
    tenant: str | None = None,
    status_code: int = 200,
    **values: Any,
) -> HTMLResponse:
    ctx = get_ctx(request)
    session = session_holder(request).ensure(new_token)
    values.update(
        user=user,
        tenant=tenant,
        csrf_token=session.csrf,
        engine=ctx.settings.engine,
        simulator_page_url=ctx.simulator_page_url,
        path=request.url.path,
        tq=(lambda path, **kw: with_query(path, tenant=tenant, **kw)),
    )
    return ctx.templates.TemplateResponse(request, template, values, status_code=status_code)
