"""The SSE stream against a real control plane: changes arrive without reload, only
changes are sent, the loop ends when the client goes away."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx

from tests.portal.conftest import ALICE, PASSWORD, Stack
from tests.portal.servers import login
from tests.support.procs import wait_until
from wafleet.db.models import MessageLog, Tenant

STREAM = "/api/portal/tenant/current/stream"


def sse_events(resp: httpx.Response) -> Iterator[tuple[str, object]]:
    """(event, data) pairs; ``("ping", None)`` for comment lines."""
    event, data = "message", ""
    for line in resp.iter_lines():
        if line.startswith(":"):
            yield "ping", None
        elif line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            data += line[len("data: ") :]
        elif line == "" and data:
            yield event, json.loads(data)
            event, data = "message", ""


def next_event(events: Iterator[tuple[str, object]], kind: str, deadline_s: float = 15) -> dict:
    end = time.monotonic() + deadline_s
    for name, data in events:
        if name == kind:
            assert isinstance(data, dict)
            return data
        if time.monotonic() > end:
            break
    raise AssertionError(f"no {kind!r} event within {deadline_s}s")


def add_message(stack: Stack, wa_id: str, body: str) -> None:
    async def add(s: object) -> None:
        from sqlalchemy import select

        tid = (await s.execute(select(Tenant.id).where(Tenant.slug == "alpha"))).scalar_one()  # type: ignore[attr-defined]
        s.add(  # type: ignore[attr-defined]
            MessageLog(
                tenant_id=tid,
                direction="in",
                wa_id=wa_id,
                chat="+15559999",
                sender="+15559999",
                body=body,
                status="RECEIVED",
            )
        )

    stack.db_run(add)


def test_stream_sends_status_qr_and_logs_as_they_change(stack: Stack) -> None:
    client = login(stack.url, ALICE, PASSWORD)
    with client.stream("GET", STREAM, timeout=20) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = sse_events(resp)
        first = next_event(events, "status")
        assert first["state"] == "DISCONNECTED"
        assert first["text"]["session-state"] == "DISCONNECTED"

        now = datetime.now(UTC)
        stack.set_session(
            "alpha",
            state="QR_READY",
            last_qr="2@first",
            last_qr_at=now,
            qr_expires_at=now + timedelta(seconds=60),
        )
        assert next_event(events, "status")["state"] == "QR_READY"
        qr = next_event(events, "qr")
        assert qr["qr_png"].startswith("data:image/png;base64,")

        stack.set_session("alpha", last_qr="2@second")  # the code rotates
        rotated = next_event(events, "qr")
        assert rotated["qr_png"] != qr["qr_png"]

        add_message(stack, "LIVE1", "hello <b>live</b>")
        log = next_event(events, "log")
        assert log["body"] == "hello <b>live</b>"  # JSON data; the page uses textContent

        stack.set_session(
            "alpha",
            state="CONNECTED",
            phone="+15550001",
            connected_since=now,
            last_seen_at=now,
        )
        connected = next_event(events, "status")
        assert connected["state"] == "CONNECTED"
        assert connected["text"]["phone"] == "+15550001"
        assert next_event(events, "qr")["qr_png"] is None  # the QR goes away


def test_stream_sends_only_changes_then_heartbeats(stack: Stack) -> None:
    client = login(stack.url, ALICE, PASSWORD)
    with client.stream("GET", STREAM, timeout=20) as resp:
        events = sse_events(resp)
        next_event(events, "status")
        seen: list[str] = []
        for name, _ in events:
            seen.append(name)
            if seen.count("ping") >= 2:
                break
        # nothing changed: at most the first timeline, then only keep-alive comments
        assert set(seen) <= {"ping", "events"}
        assert seen.count("events") <= 1


def test_stream_ends_when_the_client_goes_away(stack: Stack) -> None:
    client = login(stack.url, ALICE, PASSWORD)
    with client.stream("GET", STREAM, timeout=20) as resp:
        # Keep a reference: a collected generator closes the response (and so the
        # connection) at once, which would end the stream before the check below.
        events = sse_events(resp)
        next_event(events, "status")
        for name, _ in events:  # the stream outlives its first event
            if name == "ping":
                break
        assert stack.ctx.open_streams == 1
        events.close()
    client.close()
    wait_until(lambda: stack.ctx.open_streams == 0, timeout=10, what="the stream loop to end")


def test_stream_reports_control_plane_outage_and_recovers(stack: Stack) -> None:
    client = login(stack.url, ALICE, PASSWORD)
    with client.stream("GET", STREAM, timeout=20) as resp:
        events = sse_events(resp)
        next_event(events, "status")
        stack.cp.stop()
        problem = next_event(events, "problem")
        assert problem["error"]["code"] == "control_plane_unavailable"
        # while it is down, the REST proxies answer 503 with the error shape
        down = client.get("/api/portal/tenant/current/status")
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "control_plane_unavailable"
        from tests.portal.servers import ServerThread
        from wafleet.control_plane.app import create_app as create_cp

        restarted = ServerThread(create_cp(stack.settings, run_jobs=False), stack.cp.port).start()
        try:
            assert next_event(events, "status")["state"] == "DISCONNECTED"
        finally:
            restarted.stop()  # the fixture only stops the control plane it started


def test_stream_stops_at_portal_shutdown(stack: Stack) -> None:
    client = login(stack.url, ALICE, PASSWORD)
    with client.stream("GET", STREAM, timeout=20) as resp:
        events = sse_events(resp)  # held open: see test_stream_ends_when_the_client_goes_away
        next_event(events, "status")
        stack.portal.stop()
        # the open stream did not keep the server from stopping, and its loop has ended
        assert not stack.portal.thread.is_alive()
        assert stack.ctx.open_streams == 0
