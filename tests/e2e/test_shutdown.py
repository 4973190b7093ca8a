"""Graceful stop of a real ``wafleet worker``: SIGTERM in the middle of a message stream
drains and resumes without loss, and SIGTERM while a connect hangs is not held up by it."""

from __future__ import annotations

import signal
import subprocess
from collections import defaultdict

import pytest

from tests.e2e.conftest import PHONE, Stack, eventually

pytestmark = pytest.mark.slow

CHATS = [f"+1555300{i:04d}" for i in range(5)]


def _sigterm(stack: Stack, within: float) -> int:
    proc = stack.worker
    assert proc is not None
    proc.signal(signal.SIGTERM)
    try:
        return proc.popen.wait(within)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not exit within {within} s of SIGTERM\n{stack.logs()}")


def _worker_rows(stack: Stack) -> list[dict[str, object]]:
    return stack.query("SELECT id, status FROM worker_processes ORDER BY started_at")


def test_sigterm_mid_stream_then_new_worker_resumes(linked: Stack) -> None:
    msgs = [(CHATS[i % len(CHATS)], f"s{i:03d}") for i in range(300)]
    linked.inbound_batch(msgs)
    linked.wait_outbound(50)
    assert _sigterm(linked, 10) == 0
    assert _worker_rows(linked)[0]["status"] == "STOPPED"
    s = linked.session()
    assert (s["state"], s["last_disconnect_cause"]) == ("DISCONNECTED", "shutdown")
    assert linked.query("SELECT worker_id FROM tenant_leases") == [{"worker_id": None}]
    # every message was stored before the stop; what was not answered yet waits durably
    assert len(linked.messages("in")) == 300

    linked.start_worker()
    out = linked.wait_outbound(300, timeout=60)
    linked.wait_state("CONNECTED", phone=PHONE)
    assert len(out) == 300 and len({m["id"] for m in out}) == 300
    got: dict[str, list[str]] = defaultdict(list)
    for m in out:
        got[m["to"]].append(m["text"])
    for chat in CHATS:
        assert got[chat] == [f"echo: {t}" for c, t in msgs if c == chat]
    eventually(
        lambda: all(r["status"] == "PROCESSED" for r in linked.messages("in")),
        timeout=15,
        what="every inbound PROCESSED",
        stack=linked,
    )


def test_sigterm_while_a_connect_hangs_exits_promptly(stack: Stack) -> None:
    # Real keepalive timings: a connect to a server that never answers takes 25 s to
    # time out in the engine; SIGTERM must not wait for that (regression: it waited 15 s).
    stack.env_overrides["WAFLEET_KEEPALIVE_INTERVAL"] = "15"
    stack.env_overrides["WAFLEET_KEEPALIVE_TIMEOUT"] = "10"
    stack.start_worker()
    stack.link()
    attempts = stack.connect_attempts()
    stack.fault("blackhole")  # new connections are accepted and never answered
    stack.fault("drop")
    eventually(
        lambda: stack.session()["state"] == "CONNECTING" and stack.connect_attempts() > attempts,
        timeout=15,
        what="a reconnect hanging on the blackholed server",
        stack=stack,
    )
    assert _sigterm(stack, 5) == 0
    assert _worker_rows(stack)[0]["status"] == "STOPPED"
    s = stack.session()
    assert (s["state"], s["last_disconnect_cause"]) == ("DISCONNECTED", "shutdown")
