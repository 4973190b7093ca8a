"""``/api/portal/tenant/current/...``: JSON proxies to the control plane with the logged-in
user's email (session cookie auth; CSRF header on POST), and the SSE stream. Control-plane
errors pass through with their status and ``{"error": ...}`` body; no control plane → 503."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from wafleet.portal.auth import CurrentUser
from wafleet.portal.context import csrf_protect, current_user, get_ctx, pick_tenant, tenant_params
from wafleet.portal.errors import PortalError
from wafleet.portal.routes.status import ACTIONS
from wafleet.portal.stream import status_stream

router = APIRouter(prefix="/api/portal/tenant/current")
Tenant = Query(None, max_length=64)


def _tenant(user: CurrentUser, requested: str | None) -> str | None:
    # Without a tenant of their own, let the control plane answer (an admin may still
    # name one with ?tenant=); it decides and explains.
    return pick_tenant(user, requested)


async def _get(request: Request, user: CurrentUser, path: str, params: dict[str, Any]) -> Any:
    return await get_ctx(request).cp.get(
        f"/portal/tenant/current/{path}", user=user.email, params=params
    )


@router.get("/status")
async def api_status(
    request: Request, tenant: str | None = Tenant, user: CurrentUser = Depends(current_user)
) -> Any:
    return await _get(request, user, "status", tenant_params(_tenant(user, tenant)))


@router.get("/qr")
async def api_qr(
    request: Request, tenant: str | None = Tenant, user: CurrentUser = Depends(current_user)
) -> Any:
    return await _get(request, user, "qr", tenant_params(_tenant(user, tenant)))


@router.get("/logs")
async def api_logs(
    request: Request,
    tenant: str | None = Tenant,
    limit: int = Query(50, ge=1, le=200),
    before: int | None = Query(None, ge=1),
    direction: Literal["in", "out"] | None = None,
    chat: str | None = Query(None, max_length=128),
    user: CurrentUser = Depends(current_user),
) -> Any:
    params = tenant_params(
        _tenant(user, tenant), limit=limit, before=before, direction=direction, chat=chat
    )
    return await _get(request, user, "logs", params)


@router.get("/events")
async def api_events(
    request: Request,
    tenant: str | None = Tenant,
    limit: int = Query(50, ge=1, le=200),
    user: CurrentUser = Depends(current_user),
) -> Any:
    return await _get(request, user, "events", tenant_params(_tenant(user, tenant), limit=limit))


@router.post("/actions/{action}", dependencies=[Depends(csrf_protect)], status_code=202)
async def api_action(
    request: Request,
    action: str,
    tenant: str | None = Tenant,
    user: CurrentUser = Depends(current_user),
) -> Response:
    if action not in ACTIONS:
        raise PortalError(
            404, "unknown_action", f"unknown action {action[:32]!r} (one of {', '.join(ACTIONS)})"
        )
    status, body = await get_ctx(request).cp.request(
        "POST",
        f"/portal/tenant/current/actions/{action}",
        user=user.email,
        params=tenant_params(_tenant(user, tenant)),
    )
    return JSONResponse(body if body is not None else {"action": action}, status_code=status)


@router.get("/stream")
async def api_stream(
    request: Request,
    tenant: str | None = Tenant,
    since_log: int = Query(0, ge=0),
    user: CurrentUser = Depends(current_user),
) -> Response:
    ctx = get_ctx(request)
    slug = _tenant(user, tenant)
    if slug is None:
        raise PortalError(404, "no_tenant", "you are not a member of any tenant")
    # The first status is fetched before the stream starts, so a refused or unreachable
    # control plane is an ordinary JSON error answer (EventSource then stops or retries).
    first = await ctx.cp.get(
        "/portal/tenant/current/status", user=user.email, params={"tenant": slug}
    )
    if not isinstance(first, dict):
        raise PortalError(502, "control_plane_error", "the control plane sent no status")
    return StreamingResponse(
        status_stream(ctx, user=user.email, tenant=slug, since_log=since_log, first_status=first),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )
