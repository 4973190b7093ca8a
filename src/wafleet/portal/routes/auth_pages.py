"""``/login`` and ``/logout``, with per-account and per-address login throttling."""

from __future__ import annotations

import math

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from wafleet.portal.auth import authenticate, load_user, session_holder
from wafleet.portal.context import csrf_protect, get_ctx, render
from wafleet.portal.csrf import new_token
from wafleet.portal.errors import PortalError

router = APIRouter()


def safe_next(value: str | None) -> str | None:
    """Only same-site paths: never redirect a fresh login to another origin."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    return value


def _client_addr(request: Request) -> str:
    # The socket peer only: X-Forwarded-For is client-controlled unless a trusted proxy
    # rewrites it, and uvicorn's proxy_headers already does that for trusted ones.
    return request.client.host if request.client else "unknown"


@router.get("/")
async def root(request: Request) -> Response:
    holder = session_holder(request)
    target = "/app/status" if holder.session and holder.session.email else "/login"
    return RedirectResponse(target, status_code=303)


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", next=safe_next(next), email="", error=None)


@router.post("/login", dependencies=[Depends(csrf_protect)])
async def login_submit(request: Request) -> Response:
    ctx = get_ctx(request)
    form = await request.form()
    email = str(form.get("email") or "").strip().lower()[:320]
    password = str(form.get("password") or "")
    nxt = safe_next(str(form.get("next") or "") or None)
    keys = [f"addr:{_client_addr(request)}"] + ([f"acct:{email}"] if email else [])

    wait = ctx.limiter.retry_after(keys)
    if wait > 0:
        minutes = max(1, math.ceil(wait / 60))
        return render(
            request,
            "login.html",
            status_code=429,
            next=nxt,
            email=email,
            error=(
                "Too many failed logins for this account or from this address. "
                f"Try again in {minutes} min."
            ),
        )
    try:
        ok_email = await authenticate(ctx.db, email, password)
        user = await load_user(ctx.db, ok_email) if ok_email else None
    except SQLAlchemyError:
        raise PortalError(503, "database_unavailable", "the database is unavailable") from None
    if user is None:
        ctx.limiter.record_failure(keys)
        return render(
            request,
            "login.html",
            status_code=401,
            next=nxt,
            email=email,
            error="Wrong email or password.",
        )
    ctx.limiter.clear(f"acct:{email}")
    session_holder(request).login(user.email, new_token())
    default = "/app/status" if user.tenants or not user.is_admin else "/admin"
    return RedirectResponse(nxt or default, status_code=303)


async def _logout(request: Request) -> Response:
    session_holder(request).logout(new_token())
    return RedirectResponse("/login", status_code=303)


@router.post("/logout", dependencies=[Depends(csrf_protect)])
async def logout_post(request: Request) -> Response:
    return await _logout(request)


@router.get("/logout")
async def logout_get(request: Request) -> Response:
    # Also on GET so a typed /logout works; the worst a forged link can do is log out.
    return await _logout(request)
