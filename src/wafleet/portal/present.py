"""Turn the control plane's JSON into what the pages show: plain-words causes, relative
and absolute times, and the flat "view" of the status page that the server renders and
the SSE stream sends, so the live page and the first render never disagree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from wafleet.states import CAUSE_EXPLANATIONS, Cause, SessionState, TenantStatus, WorkerStatus

LONG_DISCONNECTED_S = 300.0
DASH = "—"


def parse_ts(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).isoformat() if dt is not None else None


def absolute(dt: datetime | None) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if dt is not None else DASH


def relative(dt: datetime | None, now: datetime) -> str:
    if dt is None:
        return "never"
    delta = (now - dt).total_seconds()
    future = delta < 0
    secs = abs(delta)
    if secs < 2:
        return "just now"
    if secs < 90:
        amount = f"{int(secs)} s"
    elif secs < 90 * 60:
        amount = f"{int(secs // 60)} min"
    elif secs < 48 * 3600:
        amount = f"{int(secs // 3600)} h"
    else:
        amount = f"{int(secs // 86400)} d"
    return f"in {amount}" if future else f"{amount} ago"


def explain(cause: Any) -> tuple[str, str]:
    """(what happened, what to do) for a disconnect cause, in plain words."""
    try:
        return CAUSE_EXPLANATIONS[Cause(str(cause))]
    except ValueError:
        return (f"Disconnected ({cause}).", "See the connection timeline and the tenant log.")


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _s(value: Any, default: str = DASH) -> str:
    return str(value) if value not in (None, "") else default


def build_status_view(
    status: dict[str, Any], now: datetime, *, stale_after: float
) -> dict[str, Any]:
    """The status page's content keyed by element id (see templates/status.html and
    static/live.js): ``text`` for textContent, ``times`` for relative times, ``show`` for
    visibility, ``countdown`` for ticking deadlines."""
    tenant = _d(status.get("tenant"))
    session = _d(status.get("session"))
    worker = status.get("worker") if isinstance(status.get("worker"), dict) else None
    reconnect = _d(status.get("reconnect"))
    last = (
        status.get("last_disconnect") if isinstance(status.get("last_disconnect"), dict) else None
    )
    messages = _d(status.get("messages"))
    state = _s(session.get("state"), SessionState.DISCONNECTED.value)

    text: dict[str, str] = {
        "session-state": state,
        "tenant-name": _s(tenant.get("name"), _s(tenant.get("slug"))),
        "tenant-status": _s(tenant.get("status")),
        "tenant-error": _s(tenant.get("error_message"), ""),
        "phone": _s(session.get("phone"), "not linked"),
        "msg-in": str(messages.get("in_24h", 0)),
        "msg-out": str(messages.get("out_24h", 0)),
        "msg-pending": str(messages.get("pending_out", 0)),
    }
    times: dict[str, str | None] = {}
    for key, value in (
        ("last-seen", session.get("last_seen_at")),
        ("connected-since", session.get("connected_since")),
    ):
        dt = parse_ts(value)
        times[key] = iso(dt)
        text[key] = relative(dt, now)
        text[key + "-abs"] = absolute(dt)

    worker_stale = False
    if worker is not None:
        hb = parse_ts(worker.get("last_heartbeat_at"))
        age = (now - hb).total_seconds() if hb else None
        worker_stale = worker.get("status") == WorkerStatus.STALE.value or (
            age is not None and age > stale_after
        )
        text["worker-id"] = _s(worker.get("id"))
        text["worker-host"] = _s(worker.get("host"))
        text["worker-status"] = _s(worker.get("status"))
        times["worker-heartbeat"] = iso(hb)
        text["worker-heartbeat"] = relative(hb, now)
        text["worker-heartbeat-abs"] = absolute(hb)
    else:
        text["worker-id"] = "no worker holds this tenant yet"
        text["worker-host"] = text["worker-status"] = DASH
        times["worker-heartbeat"] = None
        text["worker-heartbeat"] = "never"
        text["worker-heartbeat-abs"] = DASH

    attempt = reconnect.get("attempt") or 0
    max_attempts = reconnect.get("max_attempts")
    text["reconnect-attempt"] = f"{attempt} of {max_attempts}" if max_attempts else str(attempt)
    retry_at = parse_ts(reconnect.get("next_retry_at"))
    text["retry-countdown"] = _countdown(retry_at, now)

    if last is not None:
        what, todo = explain(last.get("cause"))
        at = parse_ts(last.get("at"))
        text.update(
            {
                "disconnect-cause": _s(last.get("cause")),
                "disconnect-action": _s(last.get("action")),
                "disconnect-what": what,
                "disconnect-todo": todo,
                "disconnect-detail": _s(last.get("detail"), ""),
                "disconnect-at": relative(at, now),
                "disconnect-at-abs": absolute(at),
            }
        )
        times["disconnect-at"] = iso(at)
    tenant_status = _s(tenant.get("status"))
    return {
        "state": state,
        "tenant_status": tenant_status,
        "text": text,
        "times": times,
        "countdown": {"retry-countdown": iso(retry_at)},
        "show": {
            "qr-block": state == SessionState.QR_READY.value,
            "reconnect-block": bool(reconnect.get("active")),
            "disconnect-block": last is not None,
            "tenant-error-block": tenant_status == TenantStatus.ERROR.value,
            "worker-stale": worker_stale,
            "connected-block": state == SessionState.CONNECTED.value,
        },
        "server_time": iso(now),
    }


def _countdown(at: datetime | None, now: datetime) -> str:
    if at is None:
        return DASH
    secs = int((at - now).total_seconds())
    return "now" if secs <= 0 else f"in {secs} s"


def attention_rank(item: dict[str, Any], now: datetime) -> int:
    """0 = look first. ERROR tenants, then LOGGED_OUT, then long DISCONNECTED ones."""
    if item.get("status") == TenantStatus.ERROR.value:
        return 0
    state = item.get("session_state")
    if state == SessionState.LOGGED_OUT.value:
        return 1
    if state == SessionState.DISCONNECTED.value and item.get("status") != TenantStatus.PAUSED.value:
        seen = parse_ts(item.get("last_seen_at"))
        if seen is None or (now - seen).total_seconds() > LONG_DISCONNECTED_S:
            return 2
    return 9


def attention_reason(item: dict[str, Any], rank: int) -> str:
    if rank == 0:
        return "tenant in ERROR"
    if rank == 1:
        return "logged out: needs a new QR scan"
    if rank == 2:
        return "disconnected for a long time"
    return ""


def last_disconnect_words(value: Any) -> str:
    """The admin list's last disconnect as one short line (object or plain cause)."""
    if isinstance(value, dict):
        cause = value.get("cause")
        if not cause:
            return ""
        return f"{cause}: {explain(cause)[0]}"
    if isinstance(value, str) and value:
        return f"{value}: {explain(value)[0]}"
    return ""


def timeline_rows(events: Any, now: datetime) -> list[dict[str, str]]:
    rows = []
    items = events.get("items", []) if isinstance(events, dict) else []
    for ev in items:
        if not isinstance(ev, dict):
            continue
        at = parse_ts(ev.get("at"))
        cause = ev.get("cause")
        rows.append(
            {
                "at": relative(at, now),
                "at_abs": absolute(at),
                "at_iso": at.isoformat() if at else "",
                "kind": str(ev.get("kind") or ""),
                "change": (f"{ev.get('from') or '—'} → {ev.get('to')}" if ev.get("to") else ""),
                "cause": str(cause or ""),
                "cause_words": explain(cause)[0] if cause else "",
                "detail": str(ev.get("detail") or ""),
            }
        )
    return rows


def log_rows(logs: Any, now: datetime) -> list[dict[str, Any]]:
    rows = []
    items = logs.get("items", []) if isinstance(logs, dict) else []
    for it in items:
        if not isinstance(it, dict):
            continue
        at = parse_ts(it.get("created_at"))
        rows.append(
            {
                "id": it.get("id"),
                "direction": str(it.get("direction") or ""),
                "chat": str(it.get("chat") or ""),
                "sender": str(it.get("sender") or ""),
                "body": str(it.get("body") or ""),
                "status": str(it.get("status") or ""),
                "at": relative(at, now),
                "at_abs": absolute(at),
            }
        )
    return rows
