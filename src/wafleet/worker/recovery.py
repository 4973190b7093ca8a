"""What to do after a connection ended: the contract's cause → action table as a pure
function. `decide` returns a `Recovery` that the TenantBot applies (persist, park, wait);
keeping the policy free of I/O makes every cause testable in isolation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from wafleet.states import CAUSE_EXPLANATIONS, Action, Cause, SessionState, TenantStatus, action_for
from wafleet.worker.reconnect import ReconnectManager

UNKNOWN_BAN_WAIT = timedelta(hours=1)


@dataclass(frozen=True)
class Recovery:
    action: Action
    target: SessionState = SessionState.DISCONNECTED
    park: bool = False  # wait for a user/operator request (relink, restart, resume)
    retry_at: datetime | None = None  # reconnect no earlier than this
    wipe_credentials: bool = False
    stop: bool = False  # an orderly stop by us: leave the run loop
    tenant: dict[str, Any] | None = None  # tenant columns to set (status ERROR ...)
    session: dict[str, Any] = field(default_factory=dict)  # session columns to set


def decide(
    cause: Cause,
    detail: str,
    expires_at: datetime | None,
    reconnect: ReconnectManager,
    now: datetime,
) -> Recovery:
    """Classify one ended connection. Mutates ``reconnect`` (counts the attempt)."""
    action = action_for(cause)
    common = disconnect_fields(cause, detail, now)
    idle = {"reconnect_active": False, "next_retry_at": None}
    if action is Action.RETRYING:
        # restart_required is normal right after pairing: reconnect at once, uncounted
        delay = 0.0 if cause is Cause.RESTART_REQUIRED else reconnect.schedule()
        if delay is None:
            msg = (
                f"Gave up after {reconnect.policy.max_attempts} reconnect attempts "
                f"(last cause: {cause.value}{': ' + detail if detail else ''})."
                " Check the network (wafleet doctor), then press Restart."
            )
            return Recovery(action, park=True, tenant=_error(msg), session={**common, **idle})
        at = now + timedelta(seconds=delay)
        session = {
            **common,
            "reconnect_active": True,
            "reconnect_attempt": reconnect.attempt,
            "next_retry_at": at,
        }
        return Recovery(action, retry_at=at, session=session)
    if action is Action.NEEDS_LINK:
        reconnect.stop()
        logged_out = cause is Cause.LOGGED_OUT
        return Recovery(
            action,
            target=SessionState.LOGGED_OUT if logged_out else SessionState.DISCONNECTED,
            park=True,
            wipe_credentials=logged_out,
            session={**common, **idle},
        )
    if action is Action.NEEDS_OPERATOR:
        reconnect.stop()
        what, todo = CAUSE_EXPLANATIONS[cause]
        msg = f"{what} {todo}" + (f" ({detail})" if detail else "")
        return Recovery(action, park=True, tenant=_error(msg), session={**common, **idle})
    if action is Action.WAITING_UNTIL:
        reconnect.stop()
        until = expires_at or (now + UNKNOWN_BAN_WAIT)
        session = {
            **common,
            "ban_expires_at": until,
            "reconnect_active": True,
            "next_retry_at": until,
        }
        return Recovery(action, retry_at=until, session=session)
    return Recovery(action, stop=True)


def disconnect_fields(cause: Cause, detail: str, now: datetime) -> dict[str, Any]:
    """The session columns recording how a connection ended (and that none is live)."""
    return {
        "last_disconnect_cause": cause.value,
        "last_disconnect_action": action_for(cause).value,
        "last_disconnect_at": now,
        "last_disconnect_detail": detail or None,
        "connected_since": None,
        "last_qr": None,
        "qr_expires_at": None,
    }


def _error(message: str) -> dict[str, Any]:
    return {"status": TenantStatus.ERROR.value, "error_message": message}
