"""Requests a user or operator makes of a running TenantBot (restart, relink, logout).

The supervisor passes them on from the portal's commands; `plan` says what each one does
to the session as a pure function (like `recovery.decide` for ended connections), and the
bot applies the `RequestPlan`: log the device out, wipe the credentials, park, persist.
Every request first disconnects and starts over: no retry pending, no ban, no QR shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from wafleet.states import Cause, SessionState, TenantStatus
from wafleet.worker.recovery import disconnect_fields


class Request(StrEnum):
    RESTART = "restart"
    RELINK = "relink"
    LOGOUT = "logout"


@dataclass(frozen=True)
class RequestPlan:
    target: SessionState
    kind: str  # the timeline event's kind
    logout: bool = False  # log the device out at WhatsApp first
    wipe_credentials: bool = False
    park: bool = False  # wait for the next request (a new link) instead of connecting
    cause: Cause | None = None
    detail: str | None = None
    tenant: dict[str, Any] | None = None  # tenant columns to set
    session: dict[str, Any] = field(default_factory=dict)  # session columns to set


def plan(req: Request, now: datetime) -> RequestPlan:
    reset: dict[str, Any] = {
        "reconnect_active": False,
        "reconnect_attempt": 0,
        "next_retry_at": None,
        "ban_expires_at": None,
        "last_qr": None,
        "qr_expires_at": None,
        "connected_since": None,
    }
    active = {"status": TenantStatus.ACTIVE.value, "error_message": None}
    if req is Request.RESTART:
        return RequestPlan(SessionState.DISCONNECTED, "restart", tenant=active, session=reset)
    if req is Request.RELINK:
        return RequestPlan(
            SessionState.DISCONNECTED,
            "relink",
            wipe_credentials=True,
            tenant=active,
            session={"phone": None, **reset},
        )
    detail = "logged out by request"
    return RequestPlan(
        SessionState.LOGGED_OUT,
        "logout",
        logout=True,
        wipe_credentials=True,
        park=True,
        cause=Cause.LOGGED_OUT,
        detail=detail,
        session={**disconnect_fields(Cause.LOGGED_OUT, detail, now), **reset},
    )
