"""``/app/status``: the tenant's health indicators, QR code, timeline, 24 h chart and
action buttons. Rendered complete on the server; static/live.js then keeps it current
from the SSE stream."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from wafleet.portal.auth import CurrentUser
from wafleet.portal.chart import HourBucket, bucket_logs, buckets_from_stats, render_svg
from wafleet.portal.context import (
    PortalContext,
    csrf_protect,
    current_user,
    get_ctx,
    pick_tenant,
    render,
    tenant_params,
    with_query,
)
from wafleet.portal.cp_client import ControlPlaneError
from wafleet.portal.errors import PortalError
from wafleet.portal.present import build_status_view, log_rows, parse_ts, timeline_rows

router = APIRouter()

ACTIONS = ("restart", "relink", "logout", "pause", "resume")
ACTION_NOTICES = {
    "restart": "Restart requested: the worker reconnects the session.",
    "relink": "Re-link requested: a new QR code appears in a moment.",
    "logout": "Log out requested: the WhatsApp session is being unlinked.",
    "pause": "Pause requested: the bot disconnects and stays off until resumed.",
    "resume": "Resume requested: the bot reconnects.",
}
CHART_LOG_PAGE = 100
CHART_MAX_PAGES = 20
CHART_CACHE_S = 30.0
CHART_CACHE_MAX = 1000


async def load_hourly(
    ctx: PortalContext, user: str, tenant: str, now: datetime
) -> tuple[list[HourBucket], bool]:
    """(24 hourly buckets, partial?). Prefers the control plane's hourly route; without
    it, pages through the logs (bounded) and caches the result briefly per tenant."""
    cache: dict[str, tuple[datetime, list[HourBucket], bool]] = ctx.chart_cache
    cached = cache.get(tenant)
    if cached is not None and cached[0] > now:
        return cached[1], cached[2]
    params = tenant_params(tenant)
    try:
        stats = await ctx.cp.get("/portal/tenant/current/stats/hourly", user=user, params=params)
        buckets = buckets_from_stats(stats, now)
        if buckets is not None:
            return buckets, False
    except ControlPlaneError as err:
        if err.status not in (404, 405):
            raise
    since = now - timedelta(hours=24)
    items: list[dict[str, Any]] = []
    before: Any = None
    partial = True
    for _ in range(CHART_MAX_PAGES):
        page = await ctx.cp.get(
            "/portal/tenant/current/logs",
            user=user,
            params={**params, "limit": CHART_LOG_PAGE, "before": before},
        )
        page_items = [i for i in (page or {}).get("items", []) if isinstance(i, dict)]
        items.extend(page_items)
        before = (page or {}).get("next_before")
        oldest = parse_ts(page_items[-1].get("created_at")) if page_items else None
        if before is None or oldest is None or oldest < since:
            partial = False
            break
    buckets = bucket_logs(items, now)
    if len(cache) >= CHART_CACHE_MAX:
        cache.clear()
    cache[tenant] = (now + timedelta(seconds=CHART_CACHE_S), buckets, partial)
    return buckets, partial


@router.get("/app/status")
async def status_page(
    request: Request,
    tenant: str | None = None,
    done: str | None = None,
    user: CurrentUser = Depends(current_user),
) -> Response:
    ctx = get_ctx(request)
    slug = pick_tenant(user, tenant)
    if slug is None:
        return render(request, "no_tenant.html", user=user)
    params = tenant_params(slug)
    now = ctx.now()
    status = await ctx.cp.get("/portal/tenant/current/status", user=user.email, params=params)
    if not isinstance(status, dict):
        raise PortalError(502, "control_plane_error", "the control plane sent no status")

    async def optional(path: str, **extra: Any) -> Any:
        try:
            return await ctx.cp.get(path, user=user.email, params={**params, **extra})
        except ControlPlaneError:
            return None  # a panel missing is better than no page

    qr, events, logs = await asyncio.gather(
        optional("/portal/tenant/current/qr"),
        optional("/portal/tenant/current/events", limit=20),
        optional("/portal/tenant/current/logs", limit=10),
    )
    try:
        buckets, partial = await load_hourly(ctx, user.email, slug, now)
        chart = render_svg(buckets, partial=partial)
    except ControlPlaneError:
        chart = None
    view = build_status_view(status, now, stale_after=ctx.settings.stale_after)
    qr_png = qr.get("qr_png") if isinstance(qr, dict) else None
    if not (isinstance(qr_png, str) and qr_png.startswith("data:image/png;base64,")):
        qr_png = None
    log_items = log_rows(logs, now)
    return render(
        request,
        "status.html",
        user=user,
        tenant=slug,
        view=view,
        qr_png=qr_png if view["state"] == "QR_READY" else None,
        qr_expires=(qr or {}).get("expires_at") if isinstance(qr, dict) else None,
        timeline=timeline_rows(events, now),
        logs=log_items,
        last_log_id=max((r["id"] for r in log_items if isinstance(r["id"], int)), default=0),
        chart=chart,
        notice=ACTION_NOTICES.get(done or ""),
        actions=ACTIONS,
    )


@router.post("/app/actions/{action}", dependencies=[Depends(csrf_protect)])
async def action_form(
    request: Request,
    action: str,
    tenant: str | None = None,
    user: CurrentUser = Depends(current_user),
) -> Response:
    """The no-JavaScript path of the action buttons (JS posts to the JSON API instead)."""
    if action not in ACTIONS:
        raise PortalError(404, "unknown_action", f"unknown action {action[:32]!r}")
    slug = pick_tenant(user, tenant)
    if slug is None:
        raise PortalError(404, "no_tenant", "you are not a member of any tenant")
    await get_ctx(request).cp.request(
        "POST",
        f"/portal/tenant/current/actions/{action}",
        user=user.email,
        params=tenant_params(slug),
    )
    return RedirectResponse(with_query("/app/status", tenant=slug, done=action), status_code=303)
