"""The live status stream (Server-Sent Events).

One loop per open stream polls the control plane about once a second and sends only what
changed: ``status`` (the status page's view), ``qr`` (a new code, or none once the state
left QR_READY), ``log`` (each new message log line), ``events`` (the timeline when it
changed) and ``problem`` (not "error": EventSource uses that name for its own connection
errors); a ``: ping`` comment keeps idle connections open. The loop ends when the client
goes away (Starlette cancels it) or the portal shuts down.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from wafleet.portal.context import PortalContext
from wafleet.portal.cp_client import ControlPlaneError
from wafleet.portal.present import build_status_view, log_rows, timeline_rows
from wafleet.states import SessionState

LOG_POLL_LIMIT = 20
EVENTS_LIMIT = 20
EVENTS_EVERY = 5  # polls between timeline refreshes when the status did not change
FATAL_STATUSES = (401, 403, 404, 422)


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


def _stable(status: dict[str, Any]) -> str:
    return json.dumps(status, sort_keys=True, default=str)


class StreamDiffer:
    """What changed since the last poll; pure, so the rules are unit-tested directly."""

    def __init__(self, since_log: int = 0) -> None:
        self.status_key: str | None = None
        self.qr: str | None = None
        self.last_log_id = since_log
        self.events_key: str | None = None

    def status_changed(self, status: dict[str, Any]) -> bool:
        key = _stable(status)
        changed = key != self.status_key
        self.status_key = key
        return changed

    def qr_changed(self, qr: str | None) -> bool:
        changed = qr != self.qr
        self.qr = qr
        return changed

    def new_logs(self, page: Any) -> list[dict[str, Any]]:
        items = page.get("items", []) if isinstance(page, dict) else []
        fresh = [
            i
            for i in items
            if isinstance(i, dict) and isinstance(i.get("id"), int) and i["id"] > self.last_log_id
        ]
        fresh.sort(key=lambda i: int(i["id"]))  # oldest first: the page prepends each
        if fresh:
            self.last_log_id = int(fresh[-1]["id"])
        return fresh

    def events_changed(self, events: Any) -> bool:
        key = json.dumps(events, sort_keys=True, default=str)
        changed = key != self.events_key
        self.events_key = key
        return changed

    def reset_status(self) -> None:
        self.status_key = None


async def status_stream(
    ctx: PortalContext,
    *,
    user: str,
    tenant: str,
    since_log: int,
    first_status: dict[str, Any],
) -> AsyncIterator[str]:
    params = {"tenant": tenant}
    diff = StreamDiffer(since_log)
    ctx.open_streams += 1
    status: dict[str, Any] | None = first_status
    last_sent = ctx.now()
    polls = 0
    error_code: str | None = None
    try:
        yield "retry: 2000\n\n"
        while not ctx.stopping.is_set():
            chunks: list[str] = []
            try:
                if status is None:
                    status = await ctx.cp.get(
                        "/portal/tenant/current/status", user=user, params=params
                    )
                    if not isinstance(status, dict):
                        raise ControlPlaneError(502, "control_plane_error", "no status")
                chunks += await _poll(ctx, diff, status, user, params, polls)
                error_code = None
            except ControlPlaneError as err:
                if err.status in FATAL_STATUSES:
                    yield sse("problem", {**err.body(), "fatal": True})
                    return
                if err.code != error_code:  # say it once, not every second
                    chunks.append(sse("problem", err.body()))
                error_code = err.code
                diff.reset_status()  # resend the status once the control plane is back
            now = ctx.now()
            if chunks:
                for chunk in chunks:
                    yield chunk
                last_sent = now
            elif (now - last_sent).total_seconds() >= ctx.heartbeat_interval:
                yield ": ping\n\n"
                last_sent = now
            status = None
            polls += 1
            try:
                await asyncio.wait_for(ctx.stopping.wait(), timeout=ctx.poll_interval)
            except TimeoutError:
                pass
    finally:
        ctx.open_streams -= 1


async def _poll(
    ctx: PortalContext,
    diff: StreamDiffer,
    status: dict[str, Any],
    user: str,
    params: dict[str, Any],
    polls: int,
) -> list[str]:
    now = ctx.now()
    out: list[str] = []
    status_changed = diff.status_changed(status)
    view = build_status_view(status, now, stale_after=ctx.settings.stale_after)
    if status_changed:
        out.append(sse("status", view))
    if view["state"] == SessionState.QR_READY.value:
        qr = await ctx.cp.get("/portal/tenant/current/qr", user=user, params=params)
        qr = qr if isinstance(qr, dict) else {}
        raw = qr.get("qr") if isinstance(qr.get("qr"), str) else None
        png = qr.get("qr_png")
        if diff.qr_changed(raw):
            valid = isinstance(png, str) and png.startswith("data:image/png;base64,")
            out.append(
                sse(
                    "qr",
                    {
                        "state": view["state"],
                        "qr_png": png if valid else None,
                        "expires_at": qr.get("expires_at"),
                    },
                )
            )
    elif diff.qr_changed(None):
        out.append(sse("qr", {"state": view["state"], "qr_png": None, "expires_at": None}))
    logs = await ctx.cp.get(
        "/portal/tenant/current/logs", user=user, params={**params, "limit": LOG_POLL_LIMIT}
    )
    fresh = diff.new_logs(logs)
    for row in log_rows({"items": fresh}, now):
        out.append(sse("log", row))
    if status_changed or polls % EVENTS_EVERY == 0:
        events = await ctx.cp.get(
            "/portal/tenant/current/events", user=user, params={**params, "limit": EVENTS_LIMIT}
        )
        if diff.events_changed(events):
            out.append(sse("events", {"items": timeline_rows(events, now)}))
    return out
