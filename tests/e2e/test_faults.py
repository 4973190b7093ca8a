"""Must-show 2: every simulator fault kind, against a real worker process.

Each test links the tenant, injects one fault at the simulator and checks what the
contract's cause table promises: the session state, ``last_disconnect_cause`` /
``last_disconnect_action``, the tenant status, and the retry behaviour as the simulator
saw it (``connect_attempts``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tests.e2e.conftest import PHONE, SLUG, Stack, eventually, steady

pytestmark = pytest.mark.slow

QUIET_S = 2.5  # "no further connect attempts" is checked over this long


def _ts(value: str) -> datetime:
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _disconnects(stack: Stack, after: int) -> list[dict[str, object]]:
    return [e for e in stack.events(after) if e["kind"] == "disconnect"]


def _reconnected(stack: Stack, before: dict[str, object], cause: str | None) -> dict[str, object]:
    """Wait until the session is CONNECTED again after ``before`` (with ``cause`` recorded
    as the last disconnect, unless None)."""

    def again() -> dict[str, object] | None:
        s = stack.session()
        if (
            s["state"] == "CONNECTED"
            and (cause is None or s["last_disconnect_cause"] == cause)
            and s["connected_since"] != before["connected_since"]
        ):
            return s
        return None

    return eventually(again, timeout=30, what=f"CONNECTED again after {cause}", stack=stack)


def _no_more_connects(stack: Stack) -> None:
    attempts = stack.connect_attempts()
    steady(lambda: stack.connect_attempts() == attempts, QUIET_S)
    assert stack.stats()["connections"].get(PHONE, 0) == 0


def test_drop_is_network_retrying_and_reconnects(linked: Stack) -> None:
    before = linked.session()
    mark = linked.last_event_id()
    attempts = linked.connect_attempts()
    assert linked.fault("drop")["affected"] == 1

    s = _reconnected(linked, before, "network")
    assert s["last_disconnect_action"] == "retrying"
    assert s["tenant_status"] == "ACTIVE"
    assert s["reconnect_active"] == 0 and s["reconnect_attempt"] == 0
    assert linked.connect_attempts() > attempts
    [ev] = _disconnects(linked, mark)
    assert (ev["cause"], ev["from_state"], ev["to_state"]) == (
        "network",
        "CONNECTED",
        "DISCONNECTED",
    )
    # still answering
    linked.inbound("+15559999", "after the drop")
    assert linked.wait_outbound(1)[-1]["text"] == "echo: after the drop"


def test_blackhole_is_keepalive_timeout_and_reconnects_after_expiry(linked: Stack) -> None:
    before = linked.session()
    mark = linked.last_event_id()
    # 60 s scaled by 0.05: the blackhole lasts 3 s, longer than keepalive detection (~1 s)
    linked.fault("blackhole", duration_s=60)

    def down() -> dict[str, object] | None:
        s = linked.session()
        return s if s["last_disconnect_cause"] == "keepalive_timeout" else None

    s = eventually(down, timeout=15, what="keepalive_timeout recorded", stack=linked)
    assert s["last_disconnect_action"] == "retrying"
    assert s["state"] in ("DISCONNECTED", "CONNECTING")
    first = _disconnects(linked, mark)[0]
    assert first["cause"] == "keepalive_timeout"
    assert any(e["kind"] == "keepalive_timeout" for e in linked.events(mark))

    # the fault expires by itself; the worker gets back without help
    s = _reconnected(linked, before, cause=None)
    assert s["tenant_status"] == "ACTIVE"
    assert s["reconnect_attempt"] == 0
    linked.inbound("+15559999", "after the blackhole")
    assert linked.wait_outbound(1)[-1]["text"] == "echo: after the blackhole"


def test_logout_parks_logged_out_then_relink_links_again(linked: Stack) -> None:
    old_qr_at = linked.session()["last_qr_at"]
    linked.fault("logout")
    s = linked.wait_state(
        "LOGGED_OUT", last_disconnect_cause="logged_out", last_disconnect_action="needs_link"
    )
    assert s["reconnect_active"] == 0
    assert s["tenant_status"] == "ACTIVE"
    _no_more_connects(linked)
    assert linked.session()["state"] == "LOGGED_OUT"
    # the engine's credentials were wiped
    assert not (linked.data / "sessions" / SLUG / "credentials.bin").exists()

    # relink: a NEW QR code is shown and a new scan connects
    linked.cli("tenant", "relink", SLUG)
    qr = linked.wait_qr()
    assert linked.session()["last_qr_at"] != old_qr_at
    linked.scan(qr)
    s = linked.wait_state("CONNECTED", phone=PHONE)
    linked.inbound("+15559999", "after relink")
    assert linked.wait_outbound(1)[-1]["text"] == "echo: after relink"


def test_replaced_needs_operator_and_never_fights(linked: Stack) -> None:
    linked.fault("replaced")
    s = linked.wait_state(
        "DISCONNECTED", last_disconnect_cause="replaced", last_disconnect_action="needs_operator"
    )
    s = eventually(
        lambda: (r := linked.session())["tenant_status"] == "ERROR" and r,
        timeout=10,
        what="tenant ERROR",
        stack=linked,
    )
    assert s["error_message"]
    assert s["reconnect_active"] == 0
    _no_more_connects(linked)
    st = linked.status_json()
    assert st["status"] == "ERROR"
    assert st["last_disconnect"]["cause"] == "replaced"
    assert st["last_disconnect"]["action"] == "needs_operator"


def test_temp_ban_waits_until_expiry_then_reconnects(linked: Stack) -> None:
    before = linked.session()
    # 80 s scaled by 0.05 = 4 s of ban
    linked.fault("temp_ban", duration_s=80)
    s = linked.wait_state(
        "DISCONNECTED", last_disconnect_cause="temp_banned", last_disconnect_action="waiting_until"
    )
    assert s["ban_expires_at"] is not None
    assert s["reconnect_active"] == 1
    assert s["next_retry_at"] == s["ban_expires_at"]
    expires = _ts(str(s["ban_expires_at"]))
    attempts = linked.connect_attempts()
    # no connect before the ban expires (0.3 s margin for the poll itself)
    while (expires - datetime.now(UTC)).total_seconds() > 0.3:
        assert linked.connect_attempts() == attempts, "connected during the ban"
        assert linked.session()["state"] == "DISCONNECTED"
        time.sleep(0.2)
    s = _reconnected(linked, before, "temp_banned")
    assert s["ban_expires_at"] is None
    assert s["tenant_status"] == "ACTIVE"


def test_restart_required_reconnects_at_once(stack: Stack) -> None:
    # With a 5 s initial backoff, a reconnect well before 5 s can only be the "at once" path.
    stack.env_overrides["WAFLEET_RECONNECT_INITIAL_DELAY"] = "5"
    stack.env_overrides["WAFLEET_RECONNECT_MAX_DELAY"] = "10"
    stack.start_worker()
    stack.link()
    before = stack.session()
    mark = stack.last_event_id()
    stack.fault("restart_required")
    s = _reconnected(stack, before, "restart_required")
    assert s["last_disconnect_action"] == "retrying"
    assert s["reconnect_attempt"] == 0
    evs = stack.events(mark)
    [dis] = [e for e in evs if e["kind"] == "disconnect"]
    assert dis["cause"] == "restart_required"
    conn = next(e for e in evs if e["to_state"] == "CONNECTING" and e["id"] > dis["id"])
    gap = (_ts(str(conn["at"])) - _ts(str(dis["at"]))).total_seconds()
    assert gap < 5, f"reconnect waited {gap:.2f}s: that is backoff, not 'at once'"


def test_outdated_needs_operator(linked: Stack) -> None:
    linked.fault("outdated")
    linked.wait_state(
        "DISCONNECTED",
        last_disconnect_cause="client_outdated",
        last_disconnect_action="needs_operator",
    )
    s = eventually(
        lambda: (r := linked.session())["tenant_status"] == "ERROR" and r,
        timeout=10,
        what="tenant ERROR",
        stack=linked,
    )
    assert s["error_message"]
    _no_more_connects(linked)


def test_refuse_retries_with_growing_attempts_then_recovers(linked: Stack) -> None:
    before = linked.session()
    attempts = linked.connect_attempts()
    linked.fault("refuse")
    linked.fault("drop")  # refuse only hits new connections: end the open one

    # attempt → the backoff delay it was scheduled with (next_retry_at - last_disconnect_at)
    delays: dict[int, float] = {}

    def grown() -> bool:
        s = linked.session()
        n = int(s["reconnect_attempt"] or 0)
        if s["next_retry_at"] and s["last_disconnect_at"] and n not in delays:
            gap = _ts(str(s["next_retry_at"])) - _ts(str(s["last_disconnect_at"]))
            delays[n] = gap.total_seconds()
        return n >= 4

    eventually(grown, timeout=20, what="4 reconnect attempts", stack=linked)
    s = linked.session()
    assert s["state"] in ("DISCONNECTED", "CONNECTING")
    assert (s["last_disconnect_cause"], s["last_disconnect_action"]) == ("network", "retrying")
    assert s["reconnect_active"] == 1
    assert s["tenant_status"] == "ACTIVE"
    # attempt n is scheduled after n - 1 refused connects: the simulator saw them
    assert linked.connect_attempts() >= attempts + 3
    # exponential backoff (initial 0.2 s, x2, max 1 s, no jitter) as far as we sampled it
    seq = [delays[k] for k in sorted(delays)]
    assert seq == sorted(seq), delays
    assert all(0.15 <= d <= 1.05 for d in seq), delays

    linked.clear_faults()
    s = _reconnected(linked, before, "network")
    assert s["reconnect_attempt"] == 0 and s["reconnect_active"] == 0
    linked.inbound("+15559999", "after refuse")
    assert linked.wait_outbound(1)[-1]["text"] == "echo: after refuse"
