"""``/portal/tenant/current/...``: everything a tenant's members see and do. Every route
depends on `tenant_scope` (deps.py), so none can reach another tenant's rows."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from wafleet.config import Settings
from wafleet.control_plane import queries
from wafleet.control_plane import schemas as sch
from wafleet.control_plane.deps import CallerDep, ScopeDep
from wafleet.control_plane.errors import ApiError
from wafleet.db.models import ConnectionEvent, MessageLog
from wafleet.db.repositories import TenantRepository, TenantScope, enqueue_command
from wafleet.logging import get_logger
from wafleet.states import CommandKind, MessageDirection, MessageStatus, SessionState, TenantStatus
from wafleet.worker.rules import BotConfig, RulesError, parse_bot_config

log = get_logger("wafleet.control_plane")

router = APIRouter(
    prefix="/portal/tenant/current",
    tags=["portal"],
    responses=sch.error_responses(401, 403, 404, 422, 503),
)

MAX_PAGE = 200
MAX_ID = 2**63 - 1  # larger ids cannot exist (and SQLite cannot even bind them)
MASKED = "***"

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size (1-200).")]
Before = Annotated[int | None, Query(ge=1, le=MAX_ID, description="Only items with a smaller id.")]


class ActionName(StrEnum):
    RESTART = "restart"
    RELINK = "relink"
    LOGOUT = "logout"
    PAUSE = "pause"
    RESUME = "resume"


def _settings(request: Request) -> Settings:
    s: Settings = request.app.state.settings
    return s


def _now(request: Request) -> datetime:
    now: datetime = request.app.state.clock()
    return now


@router.get("/status", response_model=sch.StatusResponse)
async def get_status(request: Request, scope: ScopeDep) -> sch.StatusResponse:
    """The health indicators of the tenant (one database round trip)."""
    return await queries.tenant_status(
        scope, now=_now(request), max_attempts=_settings(request).reconnect_max_attempts
    )


@lru_cache(maxsize=256)
def qr_png_data_uri(raw: str) -> str:
    """The QR code as a PNG data URI (cached: the portal polls while a code is shown)."""
    import segno

    return str(segno.make(raw, error="l", micro=False).png_data_uri(scale=5, border=4))


@router.get("/qr", response_model=sch.QrResponse)
async def get_qr(request: Request, scope: ScopeDep) -> sch.QrResponse:
    """The code to scan, only while the session is QR_READY and the code is still valid."""
    ws = await scope.session_row()
    state = SessionState(ws.state) if ws else SessionState.DISCONNECTED
    if ws is None or state != SessionState.QR_READY or not ws.last_qr:
        return sch.QrResponse(state=state, qr=None, qr_png=None, expires_at=None)
    if ws.qr_expires_at is not None and ws.qr_expires_at <= _now(request):
        return sch.QrResponse(state=state, qr=None, qr_png=None, expires_at=ws.qr_expires_at)
    return sch.QrResponse(
        state=state,
        qr=ws.last_qr,
        qr_png=qr_png_data_uri(ws.last_qr),
        expires_at=ws.qr_expires_at,
    )


@router.get("/logs", response_model=sch.LogsPage)
async def get_logs(
    scope: ScopeDep,
    limit: Limit = 50,
    before: Before = None,
    direction: Annotated[MessageDirection | None, Query()] = None,
    chat: Annotated[str | None, Query(max_length=128, description="One chat only.")] = None,
) -> sch.LogsPage:
    """Message log, newest first; `next_before` is null on the last page."""
    page = await scope.logs(
        limit=limit,
        before=before,
        direction=direction.value if direction else None,
        chat=chat,
    )
    items = [
        sch.LogItem(
            id=m.id,
            direction=m.direction,
            chat=m.chat,
            sender=m.sender,
            body=m.body,
            status=m.status,
            created_at=m.created_at,
            error=m.error,
        )
        for m in page.items
    ]
    return sch.LogsPage(items=items, next_before=page.next_before)


@router.get("/events", response_model=sch.EventsPage)
async def get_events(scope: ScopeDep, limit: Limit = 50, before: Before = None) -> sch.EventsPage:
    """The connection timeline, newest first."""
    page = await scope.events(limit=limit, before=before)
    items = [
        sch.EventItem(
            id=e.id,
            at=e.at,
            kind=e.kind,
            from_=e.from_state,
            to=e.to_state,
            cause=e.cause,
            detail=e.detail,
        )
        for e in page.items
    ]
    return sch.EventsPage(items=items, next_before=page.next_before)


@router.get("/stats/hourly", response_model=sch.HourlyStats)
async def get_hourly_stats(request: Request, scope: ScopeDep) -> sch.HourlyStats:
    """Messages in/out per hour over the last 24 hours (the portal's chart)."""
    return sch.HourlyStats(hours=await queries.hourly_counts(scope, now=_now(request)))


async def _record_action(
    scope: TenantScope, action: str, by: str, now: datetime, command_kind: str
) -> int:
    cmd = await enqueue_command(scope.s, scope.tenant_id, command_kind, {}, requested_by=by)
    scope.s.add(
        ConnectionEvent(
            tenant_id=scope.tenant_id, at=now, kind="action", detail=f"{action} requested by {by}"
        )
    )
    return cmd.id


PAIR_CODE_WAIT = 10.0


@router.post(
    "/actions/pair-phone",
    response_model=sch.PairPhoneResponse,
    responses=sch.error_responses(409),
)
async def post_pair_phone(
    request: Request, body: sch.PairPhoneRequest, scope: ScopeDep, caller: CallerDep
) -> sch.PairPhoneResponse:
    """Link by phone number instead of QR: the worker asks WhatsApp for a pairing code
    (the session must be waiting for a link, QR_READY). Waits up to 10 s for the code;
    200 with ``status`` READY and the code, or PENDING (read it later from the session)."""
    ws = await scope.session_row()
    if ws is None or ws.state != SessionState.QR_READY.value:
        state = ws.state if ws is not None else "unknown"
        raise ApiError(409, "not_waiting_for_link", f"the session is {state}, not QR_READY")
    ws.pair_code = None
    now = _now(request)
    scope.s.add(
        ConnectionEvent(
            tenant_id=scope.tenant_id,
            at=now,
            kind="action",
            detail=f"pair-phone requested by {caller.email}",
        )
    )
    cmd = await enqueue_command(
        scope.s,
        scope.tenant_id,
        CommandKind.PAIR_PHONE.value,
        {"phone": body.phone},
        requested_by=caller.email,
    )
    await scope.s.commit()
    code = await queries.wait_pair_code(scope, PAIR_CODE_WAIT)
    return sch.PairPhoneResponse(
        status="READY" if code else "PENDING", code=code, command_id=cmd.id
    )


@router.post("/actions/{action}", status_code=202, response_model=sch.ActionAccepted)
async def post_action(
    request: Request, action: ActionName, scope: ScopeDep, caller: CallerDep
) -> sch.ActionAccepted:
    """Queue an operator action for the worker holding the tenant. Pause and resume also
    change the tenant's status at once (resume is how an ERROR is cleared)."""
    tenant = await scope.tenant()
    now = _now(request)
    if action is ActionName.PAUSE:
        tenant.status = TenantStatus.PAUSED.value
    elif action is ActionName.RESUME:
        tenant.status = TenantStatus.ACTIVE.value
        tenant.error_message = None
    kind = CommandKind(action.value).value
    command_id = await _record_action(scope, action.value, caller.email, now, kind)
    await scope.s.commit()
    log.info("action requested", tenant=tenant.slug, action=action.value, by=caller.email)
    return sch.ActionAccepted(action=action.value, command_id=command_id)


@router.post("/messages", status_code=202, response_model=sch.SendAccepted)
async def post_message(
    request: Request, body: sch.SendMessageRequest, scope: ScopeDep, caller: CallerDep
) -> sch.SendAccepted:
    """Put a message in the tenant's durable outbox; the worker sends it when connected."""
    now = _now(request)
    wa_id = "WF" + uuid.uuid4().hex.upper()
    msg = MessageLog(
        tenant_id=scope.tenant_id,
        direction=MessageDirection.OUT.value,
        wa_id=wa_id,
        chat=body.to.strip(),
        sender="me",
        body=body.text,
        status=MessageStatus.PENDING.value,
        created_at=now,
        updated_at=now,
    )
    scope.s.add(msg)
    await scope.s.flush()
    await enqueue_command(
        scope.s,
        scope.tenant_id,
        CommandKind.SEND.value,
        {"message_id": msg.id, "wa_id": wa_id},
        requested_by=caller.email,
    )
    await scope.s.commit()
    tenant = await scope.tenant()
    log.info("outbox message queued", tenant=tenant.slug, wa_id=wa_id, by=caller.email)
    return sch.SendAccepted(id=wa_id)


def _stored_config(raw: dict[str, Any] | None) -> BotConfig:
    try:
        return BotConfig.model_validate(raw or {})
    except ValueError:
        raise ApiError(
            409, "stored_config_invalid", "the stored bot configuration is invalid; replace it"
        ) from None


def _masked(cfg: BotConfig) -> BotConfig:
    return BotConfig.model_validate(cfg.public_dict())


@router.get("/config", response_model=sch.ConfigResponse, responses=sch.error_responses(409))
async def get_config(scope: ScopeDep) -> sch.ConfigResponse:
    """The bot rules and webhook (its secret masked as ***)."""
    tenant = await scope.tenant()
    return sch.ConfigResponse(
        config=_masked(_stored_config(tenant.config)), version=tenant.config_version or 0
    )


@router.put("/config", response_model=sch.ConfigResponse, responses=sch.error_responses(409))
async def put_config(
    request: Request,
    scope: ScopeDep,
    caller: CallerDep,
    document: Annotated[
        dict[str, Any],
        Body(description="A rules document; a webhook secret of *** keeps the stored one."),
    ],
) -> sch.ConfigResponse:
    """Replace the bot rules; the worker reloads them."""
    tenant = await scope.tenant()
    hook = document.get("webhook")
    if isinstance(hook, dict) and hook.get("secret") == MASKED:
        stored = _stored_config(tenant.config).webhook
        if stored is None:
            raise ApiError(422, "invalid_rules", "webhook, secret: no stored secret to keep")
        document = {**document, "webhook": {**hook, "secret": stored.secret}}
    try:
        bot = parse_bot_config(
            document, allow_private_webhook=_settings(request).webhook_allow_private
        )
    except RulesError as err:
        raise ApiError(422, "invalid_rules", str(err)) from None
    await TenantRepository(scope.s).set_config(tenant, bot.model_dump(mode="json"))
    await enqueue_command(
        scope.s, scope.tenant_id, CommandKind.CONFIG.value, {}, requested_by=caller.email
    )
    await scope.s.commit()
    log.info("bot config saved", tenant=tenant.slug, rules=len(bot.rules), by=caller.email)
    return sch.ConfigResponse(config=_masked(bot), version=tenant.config_version)
