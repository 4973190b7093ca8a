"""A tenant's situation in plain words, with the next step and the slug filled in.

Pure: values in, one `Explanation` out; no database, no clock (``now`` is passed). Used by
``wafleet status``, ``wafleet doctor``, operator alerts and the portal, so all of them say
the same thing. Input comes either as keyword values (`explain`), from ORM rows or any
object with the session columns as attributes (`SessionFacts.from_row`), or from the
control plane's status JSON (`explain_status_json`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from wafleet.states import CAUSE_ACTIONS, Action, Cause, SessionState, TenantStatus

Severity = Literal["ok", "info", "warning", "error"]


@dataclass(frozen=True)
class SessionFacts:
    """The ``whatsapp_sessions`` columns the wording needs (all optional)."""

    state: str | None = None
    phone: str | None = None
    last_seen_at: datetime | None = None
    connected_since: datetime | None = None
    qr_expires_at: datetime | None = None
    last_disconnect_cause: str | None = None
    last_disconnect_action: str | None = None
    last_disconnect_at: datetime | None = None
    last_disconnect_detail: str | None = None
    reconnect_active: bool = False
    reconnect_attempt: int = 0
    next_retry_at: datetime | None = None
    ban_expires_at: datetime | None = None
    worker_id: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> SessionFacts:
        """From a `WhatsAppSession` (or anything with those attributes, or a mapping)."""
        get = row.get if isinstance(row, Mapping) else lambda k, d=None: getattr(row, k, d)
        return cls(
            state=get("state"),
            phone=get("phone"),
            last_seen_at=_dt(get("last_seen_at")),
            connected_since=_dt(get("connected_since")),
            qr_expires_at=_dt(get("qr_expires_at")),
            last_disconnect_cause=get("last_disconnect_cause"),
            last_disconnect_action=get("last_disconnect_action"),
            last_disconnect_at=_dt(get("last_disconnect_at")),
            last_disconnect_detail=get("last_disconnect_detail"),
            reconnect_active=bool(get("reconnect_active", False)),
            reconnect_attempt=int(get("reconnect_attempt", 0) or 0),
            next_retry_at=_dt(get("next_retry_at")),
            ban_expires_at=_dt(get("ban_expires_at")),
            worker_id=get("worker_id"),
        )


@dataclass(frozen=True)
class Explanation:
    summary: str  # what is going on, one sentence
    next_step: str  # what to do about it, concrete (commands carry the slug)
    severity: Severity

    @property
    def needs_attention(self) -> bool:
        return self.severity in ("warning", "error")

    def text(self) -> str:
        return f"{self.summary} — {self.next_step}"


def when(dt: datetime | None) -> str:
    """``2026-03-01 14:02 UTC`` (minutes are what an operator compares with)."""
    if dt is None:
        return "an unknown time"
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _dt(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _cause(value: str | None) -> Cause | None:
    try:
        return Cause(value) if value else None
    except ValueError:
        return None


def _detail(s: SessionFacts) -> str:
    return f" ({s.last_disconnect_detail})" if s.last_disconnect_detail else ""


def explain(
    slug: str,
    status: str,
    session: SessionFacts | None,
    *,
    error_message: str | None = None,
    max_attempts: int | None = None,
) -> Explanation:
    """One sentence about tenant ``slug`` and the next step (commands name the slug)."""
    s = session or SessionFacts()
    cause = _cause(s.last_disconnect_cause)
    if status == TenantStatus.PAUSED.value:
        return Explanation(
            f"Paused by an operator; no connection is kept{_since(s.last_disconnect_at)}.",
            f"Resume it when wanted: wafleet tenant resume {slug} (or Resume in the portal).",
            "info",
        )
    if status == TenantStatus.ERROR.value:
        return _error(slug, s, cause, error_message, max_attempts)
    state = s.state or SessionState.DISCONNECTED.value
    if state == SessionState.CONNECTED.value:
        who = f" as {s.phone}" if s.phone else ""
        return Explanation(
            f"Connected to WhatsApp{who} since {when(s.connected_since)}.", "Nothing to do.", "ok"
        )
    if state == SessionState.LOGGED_OUT.value:
        return _logged_out(slug, s)
    if state == SessionState.QR_READY.value:
        expires = f" (this code expires at {when(s.qr_expires_at)})" if s.qr_expires_at else ""
        return Explanation(
            f"Waiting for the QR code to be scanned{expires}.",
            f"Scan it on the phone (WhatsApp → Linked devices → Link a device): open the "
            f"portal's status page or run wafleet tenant link {slug}.",
            "info",
        )
    if state == SessionState.CONNECTING.value:
        attempt = f" (attempt {s.reconnect_attempt})" if s.reconnect_attempt else ""
        return Explanation(f"Connecting to WhatsApp{attempt}.", "Nothing to do yet.", "info")
    return _disconnected(slug, s, cause, max_attempts)


def _since(dt: datetime | None) -> str:
    return f" since {when(dt)}" if dt else ""


def _logged_out(slug: str, s: SessionFacts) -> Explanation:
    by_request = (s.last_disconnect_detail or "").startswith("logged out by request")
    who = "by request (portal or CLI)" if by_request else "from the phone"
    return Explanation(
        f"Logged out {who} on {when(s.last_disconnect_at)}; the stored credentials were wiped.",
        f"Scan a new QR code: wafleet tenant relink {slug} (or Re-link in the portal), "
        f"then wafleet tenant link {slug} shows the code.",
        "warning",
    )


def _error(
    slug: str,
    s: SessionFacts,
    cause: Cause | None,
    error_message: str | None,
    max_attempts: int | None,
) -> Explanation:
    at = when(s.last_disconnect_at)
    if cause is not None and CAUSE_ACTIONS[cause] is Action.RETRYING:
        n = max_attempts or s.reconnect_attempt or None
        tries = f"{n} reconnect attempts" if n else "the maximum number of reconnect attempts"
        return Explanation(
            f"Stopped on {at} after {tries} failed (last cause: {cause.value}{_detail(s)}).",
            f"Check the worker host's network with wafleet doctor, then wafleet tenant "
            f"restart {slug} (or Restart in the portal).",
            "error",
        )
    steps: dict[Cause, tuple[str, str]] = {
        Cause.REPLACED: (
            f"Another WhatsApp client took over the session on {at}",
            f"Make sure the account is linked to wafleet only (phone → Linked devices), "
            f"then wafleet tenant restart {slug}.",
        ),
        Cause.BANNED: (
            f"WhatsApp banned the account on {at}",
            "Contact WhatsApp support; wafleet will not reconnect a banned account.",
        ),
        Cause.CLIENT_OUTDATED: (
            f"WhatsApp rejected the client version as outdated on {at}",
            f"Upgrade wafleet (its engine library), then wafleet tenant restart {slug}.",
        ),
        Cause.AUTH_FAILURE: (
            f"WhatsApp rejected the stored credentials on {at}",
            f"Link it again: wafleet tenant relink {slug}, then scan the new QR code.",
        ),
    }
    if cause in steps:
        what, todo = steps[cause]
        return Explanation(f"{what}{_detail(s)}.", todo, "error")
    msg = f": {error_message}" if error_message else ""
    return Explanation(
        f"In ERROR{msg}".rstrip(".") + ".",
        f"Fix what the message says, then wafleet tenant restart {slug}.",
        "error",
    )


def _disconnected(
    slug: str, s: SessionFacts, cause: Cause | None, max_attempts: int | None
) -> Explanation:
    at = when(s.last_disconnect_at)
    if cause is None:
        if not s.phone:
            return Explanation(
                "Not linked to a WhatsApp account yet.",
                f"Link it: wafleet tenant link {slug} (or scan the QR code in the portal).",
                "info",
            )
        return Explanation(
            "Disconnected; waiting for a worker to connect it.",
            "Nothing to do if a worker runs (wafleet status lists them); else start one: "
            "wafleet worker.",
            "info",
        )
    if cause is Cause.QR_TIMEOUT:
        return Explanation(
            f"The QR code expired unscanned on {at}; no new code is shown until asked.",
            f"Ask for a new one and scan it: wafleet tenant link {slug} (or Re-link in "
            f"the portal).",
            "warning",
        )
    if cause is Cause.TEMP_BANNED:
        until = s.ban_expires_at or s.next_retry_at
        return Explanation(
            f"Temporarily banned by WhatsApp on {at}; the ban ends at {when(until)}.",
            "Wait: wafleet retries once the ban ends. Reduce the message volume meanwhile.",
            "warning",
        )
    if cause is Cause.WORKER_STALE:
        return Explanation(
            f"The worker holding it stopped sending heartbeats on {at}; another worker "
            "takes it over.",
            "Nothing to do if another worker runs (wafleet status lists them); else "
            "restart the worker.",
            "warning",
        )
    if cause in (Cause.SHUTDOWN, Cause.LEASE_LOST):
        return Explanation(
            f"Stopped with its worker on {at}; it resumes when a worker picks it up.",
            "Nothing to do if a worker runs; else start one: wafleet worker.",
            "info",
        )
    if cause is Cause.PAUSED:
        return Explanation(
            "Resumed; waiting for its worker to connect it.", "Nothing to do.", "info"
        )
    if s.reconnect_active:
        of = f" of {max_attempts}" if max_attempts else ""
        nxt = f", next try at {when(s.next_retry_at)}" if s.next_retry_at else ""
        why = cause.value + (f": {s.last_disconnect_detail}" if s.last_disconnect_detail else "")
        return Explanation(
            f"Disconnected on {at} ({why}); "
            f"reconnecting by itself — attempt {s.reconnect_attempt}{of}{nxt}.",
            "Nothing to do. If it persists, run wafleet doctor on the worker host "
            "(network, engine).",
            "warning" if s.reconnect_attempt >= 3 else "info",
        )
    return Explanation(
        f"Disconnected on {at} ({cause.value}{_detail(s)}).",
        f"Nothing to do if a worker holds it; else wafleet tenant restart {slug}.",
        "info",
    )


def explain_status_json(payload: Mapping[str, Any]) -> Explanation:
    """From the control plane's ``GET /portal/tenant/current/status`` JSON (the portal)."""
    tenant = payload.get("tenant") or {}
    sess = payload.get("session") or {}
    rc = payload.get("reconnect") or {}
    ld = payload.get("last_disconnect") or {}
    cause = ld.get("cause")
    facts = SessionFacts(
        state=sess.get("state"),
        phone=sess.get("phone"),
        last_seen_at=_dt(sess.get("last_seen_at")),
        connected_since=_dt(sess.get("connected_since")),
        last_disconnect_cause=cause,
        last_disconnect_action=ld.get("action"),
        last_disconnect_at=_dt(ld.get("at")),
        last_disconnect_detail=ld.get("detail"),
        reconnect_active=bool(rc.get("active")),
        reconnect_attempt=int(rc.get("attempt") or 0),
        next_retry_at=_dt(rc.get("next_retry_at")),
        # a temporary ban's end is the next retry (the worker sets both)
        ban_expires_at=_dt(rc.get("next_retry_at")) if cause == Cause.TEMP_BANNED else None,
    )
    return explain(
        str(tenant.get("slug") or "SLUG"),
        str(tenant.get("status") or TenantStatus.ACTIVE.value),
        facts,
        error_message=tenant.get("error_message"),
        max_attempts=rc.get("max_attempts"),
    )
