"""TenantBot lifecycle against a scripted engine, a real SQLite database and a manual
clock: every cause of the contract leads to the right state, action and retry behaviour."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.worker.conftest import BotHarness
from wafleet.db.models import ConnectionEvent, MessageLog, Tenant, WhatsAppSession
from wafleet.engines.base import (
    ClientOutdated,
    ConnectionLost,
    LoggedOut,
    PairSuccess,
    Replaced,
    TemporaryBan,
)
from wafleet.states import Cause, SessionState
from wafleet.worker.bot_requests import Request


async def until(pred: Callable[[], Any], what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        res = pred()
        if asyncio.iscoroutine(res):
            res = await res
        if res:
            return
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def until_state(h: BotHarness, state: SessionState, what: str = "") -> None:
    """Until the state is persisted (the in-memory state changes first)."""

    async def persisted() -> bool:
        return (await session(h)).state == state.value

    await until(persisted, what or state.value)


async def session(h: BotHarness) -> WhatsAppSession:
    async with h.db.session() as s:
        ws = await s.get(WhatsAppSession, h.tenant_id)
        assert ws is not None
        return ws


async def tenant(h: BotHarness) -> Tenant:
    async with h.db.session() as s:
        t = await s.get(Tenant, h.tenant_id)
        assert t is not None
        return t


def tenant_error(h: BotHarness) -> Callable[[], Any]:
    async def check() -> bool:
        return (await tenant(h)).status == "ERROR"

    return check


async def connected_bot(h: BotHarness):  # type: ignore[no-untyped-def]
    await h.creds.save(b"+15550001")
    bot = h.bot()
    bot.start()
    await until_state(h, SessionState.CONNECTED)
    return bot


async def test_qr_pairing_then_restart_required_connects(harness: BotHarness) -> None:
    h = harness
    bot = h.bot()
    bot.start()
    await until_state(h, SessionState.QR_READY)
    ws = await session(h)
    assert ws.state == "QR_READY" and ws.last_qr == "QR-1"
    engine = h.world.engine
    assert engine is not None
    await engine.emit(PairSuccess(phone="+15550001"))
    await h.creds.save(b"+15550001")
    await engine.emit(ConnectionLost(cause=Cause.RESTART_REQUIRED))
    await until_state(h, SessionState.CONNECTED, "CONNECTED after restart")
    ws = await session(h)
    assert ws.phone == "+15550001" and ws.reconnect_attempt == 0
    await bot.stop()
    ws = await session(h)
    assert ws.state == "DISCONNECTED" and ws.last_disconnect_cause == "shutdown"


async def test_network_drop_backs_off_then_reconnects(harness: BotHarness) -> None:
    h = harness
    bot = await connected_bot(h)
    h.world.fail_next = [Cause.NETWORK]
    await h.world.engine.emit(ConnectionLost(cause=Cause.NETWORK, detail="drop"))  # type: ignore[union-attr]
    await until(lambda: h.clock.pending_sleeps == [1.0], "first backoff of 1 s")
    ws = await session(h)
    assert (ws.state, ws.last_disconnect_cause, ws.last_disconnect_action) == (
        "DISCONNECTED",
        "network",
        "retrying",
    )
    assert ws.reconnect_active and ws.reconnect_attempt == 1
    h.clock.advance(1.0)  # attempt 1 fails (scripted) → backoff 2 s
    await until(lambda: h.clock.pending_sleeps == [2.0], "second backoff of 2 s")
    assert (await session(h)).reconnect_attempt == 2
    h.clock.advance(2.0)
    await until_state(h, SessionState.CONNECTED, "reconnected")
    assert (await session(h)).reconnect_attempt == 0
    assert h.world.max_in_flight == 1  # never two connects at once
    await bot.stop()


async def test_max_attempts_sets_tenant_error(harness: BotHarness) -> None:
    h = harness
    h.world.fail_next = [Cause.NETWORK] * 10
    await h.creds.save(b"+15550001")
    bot = h.bot()
    bot.start()
    for delay in (1.0, 2.0, 4.0):
        await until(lambda d=delay: h.clock.pending_sleeps == [d], f"backoff {delay}")  # type: ignore[misc]
        h.clock.advance(delay)
    await until(tenant_error(h), "tenant ERROR after max attempts")
    assert bot.parked
    t = await tenant(h)
    assert t.status == "ERROR" and "Gave up after 3 reconnect attempts" in (t.error_message or "")
    connects = h.world.connects
    h.clock.advance(3600)
    await asyncio.sleep(0.05)
    assert h.world.connects == connects  # parked: no more attempts
    bot.request(Request.RESTART)
    h.world.fail_next = []
    await until_state(h, SessionState.CONNECTED, "restart reconnects")
    assert (await tenant(h)).status == "ACTIVE"
    await bot.stop()


async def test_logged_out_wipes_credentials_and_never_retries(harness: BotHarness) -> None:
    h = harness
    bot = await connected_bot(h)
    connects = h.world.connects
    await h.world.engine.emit(LoggedOut(detail="unlinked from phone"))  # type: ignore[union-attr]
    await until_state(h, SessionState.LOGGED_OUT)
    assert await h.creds.load() is None
    h.clock.advance(3600)
    await asyncio.sleep(0.05)
    assert h.world.connects == connects
    ws = await session(h)
    assert (ws.last_disconnect_cause, ws.last_disconnect_action) == ("logged_out", "needs_link")
    bot.request(Request.RELINK)
    await until_state(h, SessionState.QR_READY, "relink shows a QR")
    await bot.stop()


@pytest.mark.parametrize(
    ("event", "cause"),
    [
        (Replaced(detail="another client"), "replaced"),
        (ClientOutdated(), "client_outdated"),
        (ConnectionLost(cause=Cause.BANNED), "banned"),
    ],
)
async def test_needs_operator_causes_park_with_error(
    harness: BotHarness, event: ConnectionLost, cause: str
) -> None:
    h = harness
    bot = await connected_bot(h)
    connects = h.world.connects
    await h.world.engine.emit(event)  # type: ignore[union-attr]
    await until(tenant_error(h), "tenant ERROR")
    assert bot.parked
    t = await tenant(h)
    ws = await session(h)
    assert t.status == "ERROR" and t.error_message
    assert (ws.last_disconnect_cause, ws.last_disconnect_action) == (cause, "needs_operator")
    h.clock.advance(3600)
    await asyncio.sleep(0.05)
    assert h.world.connects == connects
    await bot.stop()


async def test_temp_ban_waits_for_expiry_then_retries_once(harness: BotHarness) -> None:
    h = harness
    bot = await connected_bot(h)
    until_at = h.clock.now() + timedelta(seconds=300)
    await h.world.engine.emit(TemporaryBan(expires_at=until_at))  # type: ignore[union-attr]
    await until(lambda: h.clock.pending_sleeps == [300.0], "waits 300 s")
    ws = await session(h)
    assert (ws.last_disconnect_cause, ws.last_disconnect_action) == ("temp_banned", "waiting_until")
    assert ws.ban_expires_at == until_at
    connects = h.world.connects
    h.clock.advance(299)
    await asyncio.sleep(0.05)
    assert h.world.connects == connects
    h.clock.advance(1)
    await until_state(h, SessionState.CONNECTED, "connected after the ban")
    assert h.world.connects == connects + 1
    await bot.stop()


async def test_messages_stored_before_ack_and_replied_once_in_order(harness: BotHarness) -> None:
    h = harness
    for i in range(30):
        h.world.message(f"+1555000{i % 3}", f"msg {i}")
    bot = await connected_bot(h)
    await until(lambda: len(h.world.sent) == 30, "30 replies")
    # per chat, replies in the order of the inbound messages
    for chat in {c for c, _, _ in h.world.sent}:
        texts = [t for c, t, _ in h.world.sent if c == chat]
        nums = [int(t.split()[-1]) for t in texts]
        assert nums == sorted(nums)
    async with h.db.session() as s:
        rows = (await s.execute(select(MessageLog))).scalars().all()
    assert sum(1 for r in rows if r.direction == "in" and r.status == "PROCESSED") == 30
    outs = [r for r in rows if r.direction == "out"]
    assert len(outs) == 30 and len({r.wa_id for r in outs}) == 30
    await until(lambda: len(h.world.acked) == 30, "all acked")
    await bot.stop()


async def test_transitions_are_recorded_in_the_timeline(harness: BotHarness) -> None:
    h = harness
    bot = await connected_bot(h)
    await bot.stop()
    async with h.db.session() as s:
        evs = (
            (await s.execute(select(ConnectionEvent).order_by(ConnectionEvent.id))).scalars().all()
        )
    pairs = [(e.from_state, e.to_state) for e in evs]
    assert ("DISCONNECTED", "CONNECTING") in pairs
    assert ("CONNECTING", "CONNECTED") in pairs
    assert ("CONNECTED", "DISCONNECTED") in pairs


async def test_stale_epoch_writes_nothing(harness: BotHarness) -> None:
    h = harness
    await h.creds.save(b"+15550001")
    bot = h.bot(epoch=0)  # the lease is at epoch 1: this bot is fenced off
    bot.start()
    await until(lambda: bot.lease_lost, "bot notices the lost lease")
    await bot.stop()
    ws = await session(h)
    assert ws.state == "DISCONNECTED" and ws.worker_id is None
