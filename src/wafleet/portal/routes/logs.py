"""``/app/logs``: message logs, newest first, filtered by direction and chat, paged with
``before`` (the control plane's cursor)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from wafleet.portal.auth import CurrentUser
from wafleet.portal.context import current_user, get_ctx, pick_tenant, render, tenant_params
from wafleet.portal.errors import PortalError
from wafleet.portal.present import log_rows

router = APIRouter()
PAGE_SIZE = 50
MAX_CHAT_LEN = 128


@router.get("/app/logs")
async def logs_page(
    request: Request,
    tenant: str | None = None,
    direction: str | None = None,
    chat: str | None = None,
    before: str | None = None,
    user: CurrentUser = Depends(current_user),
) -> Response:
    ctx = get_ctx(request)
    slug = pick_tenant(user, tenant)
    if slug is None:
        return render(request, "no_tenant.html", user=user)
    if direction not in (None, "", "in", "out"):
        raise PortalError(422, "invalid_direction", "direction: must be 'in' or 'out'")
    if before not in (None, "") and not str(before).isdigit():
        raise PortalError(422, "invalid_before", "before: must be a message id (a number)")
    chat = (chat or "").strip()[:MAX_CHAT_LEN] or None
    page = await ctx.cp.get(
        "/portal/tenant/current/logs",
        user=user.email,
        params=tenant_params(slug, limit=PAGE_SIZE, before=before, direction=direction, chat=chat),
    )
    rows = log_rows(page, ctx.now())
    if chat:
        # The contract's logs route has no chat filter yet; filtering here as well keeps
        # the page right whether or not the control plane applies ``chat``.
        rows = [r for r in rows if r["chat"] == chat]
    next_before = page.get("next_before") if isinstance(page, dict) else None
    return render(
        request,
        "logs.html",
        user=user,
        tenant=slug,
        rows=rows,
        direction=direction or "",
        chat=chat or "",
        before=before or "",
        next_before=next_before,
        last_log_id=max((r["id"] for r in rows if isinstance(r["id"], int)), default=0),
        live=not before,
    )
