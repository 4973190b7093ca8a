"""``/app/settings``: the bot rules and webhook as a JSON document, validated here (same
rules module as the control plane, for instant one-line errors) and by the control
plane on save. The webhook secret is never shown: "***" keeps the stored one."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from wafleet.portal.auth import CurrentUser
from wafleet.portal.context import (
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
from wafleet.worker.rules import RulesError, load_bot_config_text

router = APIRouter()
CONFIG_PATH = "/portal/tenant/current/config"
MAX_DOCUMENT_CHARS = 1_000_000
EXAMPLE = {
    "rules": [
        {"match": "keyword", "pattern": "price", "reply": "Our prices: ..."},
        {"match": "regex", "pattern": "^(hi|hello)\\b", "reply": "Hello {sender}!"},
        {"match": "any", "reply": "You said: {text}"},
    ],
    "webhook": {"url": "https://example.org/hook", "secret": "change-me"},
}


def unwrap_config(answer: Any) -> dict[str, Any]:
    """The rules document from the control plane's ``{"config": {...}, "version": N}``
    (or a bare document); an empty config shows as an empty rule list."""
    doc = answer.get("config", answer) if isinstance(answer, dict) else None
    if not isinstance(doc, dict):
        return {"rules": []}
    doc = {k: v for k, v in doc.items() if v is not None}
    doc.setdefault("rules", [])
    return doc


@router.get("/app/settings")
async def settings_page(
    request: Request,
    tenant: str | None = None,
    saved: str | None = None,
    user: CurrentUser = Depends(current_user),
) -> Response:
    ctx = get_ctx(request)
    slug = pick_tenant(user, tenant)
    if slug is None:
        return render(request, "no_tenant.html", user=user)
    answer = await ctx.cp.get(CONFIG_PATH, user=user.email, params=tenant_params(slug))
    config = unwrap_config(answer)
    return render(
        request,
        "settings.html",
        user=user,
        tenant=slug,
        document=json.dumps(config, indent=2, ensure_ascii=False),
        example=json.dumps(EXAMPLE, indent=2),
        error=None,
        saved=bool(saved),
    )


@router.post("/app/settings", dependencies=[Depends(csrf_protect)])
async def settings_save(
    request: Request,
    tenant: str | None = None,
    user: CurrentUser = Depends(current_user),
) -> Response:
    ctx = get_ctx(request)
    slug = pick_tenant(user, tenant)
    if slug is None:
        raise PortalError(404, "no_tenant", "you are not a member of any tenant")
    form = await request.form()
    text = str(form.get("document") or "")

    def again(error: str, status: int) -> Response:
        return render(
            request,
            "settings.html",
            status_code=status,
            user=user,
            tenant=slug,
            document=text,
            example=json.dumps(EXAMPLE, indent=2),
            error=error,
            saved=False,
        )

    if len(text) > MAX_DOCUMENT_CHARS:
        return again("document: too large (at most 1 MB)", 422)
    try:
        # Private-address policy is the control plane's call (it knows the setting).
        load_bot_config_text(text, allow_private_webhook=True)
    except RulesError as err:
        return again(str(err), 422)
    try:
        await ctx.cp.request(
            "PUT", CONFIG_PATH, user=user.email, params=tenant_params(slug), json=json.loads(text)
        )
    except ControlPlaneError as err:
        if err.status in (400, 409, 422):
            return again(err.message, 422)
        raise
    return RedirectResponse(with_query("/app/settings", tenant=slug, saved=1), status_code=303)
