"""`SimulatorEngine` against a real simulator server over real sockets (in-process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from tests.simulator.helpers import make_engine, pair, running_simulator
from wafleet.engines.base import (
    ClientOutdated,
    Connected,
    ConnectFailed,
    ConnectionLost,
    EngineError,
    IncomingMessage,
    KeepAliveTimeout,
    LoggedOut,
    NotConnected,
    OutgoingText,
    PairSuccess,
    QrCode,
    QrTimeout,
    Receipt,
    Replaced,
    TemporaryBan,
)
from wafleet.engines.credentials import MemoryCredentialStore
from wafleet.engines.simulator import SimulatorEngine
from wafleet.states import Cause

PHONE = "+15550001"


@pytest.fixture
async def sim() -> AsyncIterator[running_simulator]:
    async with running_simulator(time_scale=0.05) as s:
        yield s


async def linked(sim: running_simulator, **kw: float) -> tuple:
    engine, rec, store = make_engine(sim.ws_url, **kw)
    await pair(engine, rec, sim.http, PHONE)
    return engine, rec, store


async def settle(sim: running_simulator) -> None:
    """A control-API round trip: frames already sent by the server have been processed."""
    await sim.stats()
    await asyncio.sleep(0.05)


def engine_tasks() -> list[str]:
    return [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("sim-engine")]


# ------------------------------------------------------------------ pairing


async def test_pair_by_qr_then_login_with_persisted_credentials(sim: running_simulator) -> None:
    engine, rec, store = make_engine(sim.ws_url)
    try:
        connected = await pair(engine, rec, sim.http, PHONE)
        assert connected.phone == PHONE
        assert connected.jid == "15550001@s.whatsapp.net"
        kinds = [type(e).__name__ for e in rec.events]
        assert kinds == ["QrCode", "PairSuccess", "ConnectionLost", "Connected"]
        assert rec.lost()[0].cause is Cause.RESTART_REQUIRED
        assert rec.of(PairSuccess)[0].phone == PHONE
        assert store.data is not None
        assert b"token" in store.data
        assert rec.of(QrCode)[0].expires_at is not None
        stats = await sim.stats()
        assert stats["connections"] == {PHONE: 1}
        assert stats["connect_attempts"] == {PHONE: 1}  # the login; the QR connect had no phone
    finally:
        await engine.close()
    assert engine_tasks() == []


async def test_qr_rotation_then_qr_timeout() -> None:
    # time-scale 0.005: first code 0.3 s, then five of 0.1 s each.
    async with running_simulator(time_scale=0.005) as sim:
        engine, rec, _ = make_engine(sim.ws_url)
        try:
            await engine.connect()
            timeout = await rec.wait_for(QrTimeout)
            codes = rec.of(QrCode)
            assert len(codes) == 6
            assert len({c.code for c in codes}) == 6
            expiries = [c.expires_at for c in codes]
            assert all(e is not None for e in expiries)
            assert expiries == sorted(expiries)  # type: ignore[type-var]
            assert timeout.cause is Cause.QR_TIMEOUT
            assert len(rec.lost()) == 1
            resp = await sim.http.post("/sim/scan", json={"qr": codes[-1].code, "phone": PHONE})
            assert resp.status_code == 404
            assert resp.json()["error"]["code"] == "unknown_qr"
        finally:
            await engine.close()


async def test_pairing_code_flow(sim: running_simulator) -> None:
    engine, rec, _store = make_engine(sim.ws_url)
    try:
        await engine.connect()
        await rec.wait_for(QrCode)
        code = await engine.pair_phone(PHONE)
        assert len(code) == 9
        assert code[4] == "-"
        wrong = await sim.http.post("/sim/scan", json={"qr": code, "phone": "+15550002"})
        assert wrong.status_code == 409
        ok = await sim.http.post("/sim/scan", json={"qr": code, "phone": PHONE})
        assert ok.status_code == 200
        await rec.wait_for(PairSuccess)
        await rec.wait_for(ConnectionLost)
        await engine.connect()
        assert (await rec.wait_for(Connected)).phone == PHONE
    finally:
        await engine.close()


async def test_pair_phone_needs_a_qr_connection(sim: running_simulator) -> None:
    engine, _rec, _ = make_engine(sim.ws_url)
    with pytest.raises(NotConnected):
        await engine.pair_phone(PHONE)


# ------------------------------------------------------------------ messages


async def test_receive_ack_and_redelivery_after_reconnect(sim: running_simulator) -> None:
    engine, rec, _ = await linked(sim)
    try:
        ids = [await sim.inbound(PHONE, "+15559999", f"m{i}") for i in range(3)]
        await rec.wait_for(IncomingMessage, count=3)
        got = rec.of(IncomingMessage)
        assert [m.id for m in got] == ids
        assert [m.text for m in got] == ["m0", "m1", "m2"]
        assert got[0].chat == got[0].sender == "+15559999"
        await engine.ack(ids[0])
        await settle(sim)
        assert (await sim.stats())["inbound_pending"] == 2
        await engine.disconnect()
        assert len(rec.lost()) == 1  # only the pairing restart: disconnect() emits nothing
        # Arrives while offline: delivered after the reconnect, after the older ones.
        ids.append(await sim.inbound(PHONE, "+15559999", "m3"))
        await engine.connect()
        await rec.wait_for(IncomingMessage, count=6)
        again = [m.id for m in rec.of(IncomingMessage)[3:]]
        assert again == ids[1:]  # unacked redelivered, in order; acked not
        for mid in ids[1:]:
            await engine.ack(mid)
        await settle(sim)
        stats = await sim.stats()
        assert stats["inbound_pending"] == 0
        assert stats["delivered"] == 4
    finally:
        await engine.close()


async def test_send_receipts_and_resend_recorded_once(sim: running_simulator) -> None:
    engine, rec, _ = await linked(sim)
    try:
        await engine.send_text("+15559999", "hello", "out-1")
        await engine.send_text("+15559999", "hello", "out-1")  # resend after a "crash"
        await engine.send_text("+15559998", "second", "out-2")
        await rec.wait_for(Receipt, count=6)
        statuses = [(r.message_id, r.status) for r in rec.of(Receipt)]
        assert statuses[:2] == [("out-1", "DELIVERED"), ("out-1", "READ")]
        resp = await sim.http.get("/sim/outbound", params={"phone": PHONE})
        out = resp.json()
        assert [(m["id"], m["to"], m["text"]) for m in out] == [
            ("out-1", "+15559999", "hello"),
            ("out-2", "+15559998", "second"),
        ]
        assert (await sim.stats())["outbound"] == 2
    finally:
        await engine.close()


async def test_send_many_keeps_order_and_records_a_repeated_id_once(
    sim: running_simulator,
) -> None:
    engine, _rec, _ = await linked(sim)
    try:
        batch = [OutgoingText("+15559999", f"t{i}", f"many-{i}") for i in range(50)]
        assert await engine.send_many([*batch, batch[3]]) == [None] * 51
        resp = await sim.http.get("/sim/outbound", params={"phone": PHONE})
        assert [m["id"] for m in resp.json()] == [m.message_id for m in batch]
    finally:
        await engine.close()
    # once the connection is gone, every message reports NotConnected (none is lost
    # silently: the outbox keeps them PENDING)
    results = await engine.send_many([OutgoingText("+1", "x", "late-1")] * 2)
    assert [type(r) for r in results] == [NotConnected, NotConnected]


async def test_send_without_login_raises_not_connected(sim: running_simulator) -> None:
    engine, rec, _ = make_engine(sim.ws_url)
    try:
        with pytest.raises(NotConnected):
            await engine.send_text("+1", "x", "id-1")
        await engine.connect()  # waiting for a QR scan: still not logged in
        await rec.wait_for(QrCode)
        with pytest.raises(NotConnected):
            await engine.send_text("+1", "x", "id-1")
    finally:
        await engine.close()


# ------------------------------------------------------------------ faults


async def test_drop_is_network_and_reconnect_works(sim: running_simulator) -> None:
    engine, rec, _ = await linked(sim)
    try:
        await sim.fault("drop", PHONE)
        lost = await rec.wait_for(ConnectionLost, count=2)
        assert type(lost) is ConnectionLost
        assert lost.cause is Cause.NETWORK
        await engine.connect()
        await rec.wait_for(Connected, count=2)
        await settle(sim)
        assert len(rec.lost()) == 2
        assert (await sim.stats())["max_concurrent"] == {PHONE: 1}
    finally:
        await engine.close()


async def test_drop_with_duration_fails_connects_until_cleared(sim: running_simulator) -> None:
    engine, rec, _ = await linked(sim)
    try:
        await sim.fault("drop", PHONE, duration_s=600)
        await rec.wait_for(ConnectionLost, count=2)
        with pytest.raises(ConnectFailed) as info:
            await engine.connect()
        assert info.value.cause is Cause.NETWORK
        assert (await sim.http.request("DELETE", "/sim/faults", json={"phone": PHONE})).json() == {
            "cleared": 1
        }
        await engine.connect()
        await rec.wait_for(Connected, count=2)
    finally:
        await engine.close()


async def test_blackhole_is_detected_by_keepalive(sim: running_simulator) -> None:
    engine, rec, _ = await linked(
        sim, keepalive_interval=0.2, keepalive_timeout=0.3, connect_timeout=0.5
    )
    try:
        await sim.fault("blackhole", PHONE)
        pending = asyncio.create_task(engine.send_text("+1", "lost", "bh-1"))
        lost = await rec.wait_for(ConnectionLost, count=2)
        assert lost.cause is Cause.KEEPALIVE_TIMEOUT
        kinds = [type(e).__name__ for e in rec.events[-2:]]
        assert kinds == ["KeepAliveTimeout", "ConnectionLost"]
        assert len(rec.of(KeepAliveTimeout)) == 1
        with pytest.raises(NotConnected):
            await pending
        # While the blackhole lasts a new connection is accepted but never answered.
        with pytest.raises(ConnectFailed) as info:
            await engine.connect()
        assert info.value.cause is Cause.NETWORK
        await sim.http.delete("/sim/faults")
        await engine.connect()
        await rec.wait_for(Connected, count=2)
        out = (await sim.http.get("/sim/outbound", params={"phone": PHONE})).json()
        assert out == []  # ignored by the blackhole: the bot must resend it
    finally:
        await engine.close()


async def test_logout_fault_then_connect_fails_logged_out(sim: running_simulator) -> None:
    engine, rec, store = await linked(sim)
    try:
        await sim.fault("logout", PHONE)
        lost = await rec.wait_for(LoggedOut)
        assert lost.cause is Cause.LOGGED_OUT
        assert store.data is not None  # the bot wipes on LoggedOut, not the engine
        with pytest.raises(ConnectFailed) as info:
            await engine.connect()
        assert info.value.cause is Cause.LOGGED_OUT
        await settle(sim)
        assert len(rec.lost()) == 2
    finally:
        await engine.close()


async def test_replaced_fault_keeps_device_valid(sim: running_simulator) -> None:
    engine, rec, _ = await linked(sim)
    try:
        await sim.fault("replaced", PHONE)
        lost = await rec.wait_for(Replaced)
        assert lost.cause is Cause.REPLACED
        await engine.connect()
        await rec.wait_for(Connected, count=2)
    finally:
        await engine.close()


async def test_same_credentials_twice_counts_two_and_replaces_older(
    sim: running_simulator,
) -> None:
    first, rec1, store = await linked(sim)
    second, rec2, _ = make_engine(sim.ws_url, store=MemoryCredentialStore(store.data), slug="t2")
    try:
        await second.connect()
        await rec2.wait_for(Connected)
        lost = await rec1.wait_for(Replaced)
        assert lost.cause is Cause.REPLACED
        stats = await sim.stats()
        assert stats["max_concurrent"] == {PHONE: 2}
        assert stats["connections"] == {PHONE: 1}
        assert rec2.lost() == []
    finally:
        await first.close()
        await second.close()


async def test_temp_ban_with_expiry_then_success(sim: running_simulator) -> None:
    engine, rec, _ = await linked(sim)
    try:
        # duration scaled by the time-scale: 30 s * 0.05 = 1.5 s
        answer = await sim.fault("temp_ban", PHONE, duration_s=30)
        ban = await rec.wait_for(TemporaryBan)
        assert ban.cause is Cause.TEMP_BANNED
        assert ban.expires_at is not None
        assert answer["expires_at"] is not None
        with pytest.raises(ConnectFailed) as info:
            await engine.connect()
        assert info.value.cause is Cause.TEMP_BANNED
        assert info.value.expires_at is not None
        wait = (info.value.expires_at - datetime.now(UTC)).total_seconds()
        assert 0 < wait <= 1.5
        await asyncio.sleep(wait + 0.05)
        await engine.connect()
        await rec.wait_for(Connected, count=2)
    finally:
        await engine.close()


async def test_restart_required_fault(sim: running_simulator) -> None:
    engine, rec, _ = await linked(sim)
    try:
        await sim.fault("restart_required", PHONE)
        lost = await rec.wait_for(ConnectionLost, count=2)
        assert type(lost) is ConnectionLost
        assert lost.cause is Cause.RESTART_REQUIRED
        await engine.connect()
        await rec.wait_for(Connected, count=2)
    finally:
        await engine.close()


async def test_outdated_fault_until_cleared(sim: running_simulator) -> None:
    engine, rec, _ = await linked(sim)
    try:
        await sim.fault("outdated", "*")
        lost = await rec.wait_for(ClientOutdated)
        assert lost.cause is Cause.CLIENT_OUTDATED
        with pytest.raises(ConnectFailed) as info:
            await engine.connect()
        assert info.value.cause is Cause.CLIENT_OUTDATED
        await sim.http.delete("/sim/faults")
        await engine.connect()
        await rec.wait_for(Connected, count=2)
    finally:
        await engine.close()


async def test_refuse_fails_connect_with_network(sim: running_simulator) -> None:
    engine, rec, _ = await linked(sim)
    try:
        await sim.fault("refuse", PHONE, duration_s=600)
        await engine.disconnect()
        with pytest.raises(ConnectFailed) as info:
            await engine.connect()
        assert info.value.cause is Cause.NETWORK
        assert "403" in info.value.detail
        stats = await sim.stats()
        assert stats["connect_attempts"] == {PHONE: 2}
        await sim.http.delete("/sim/faults")
        await engine.connect()
        await rec.wait_for(Connected, count=2)
    finally:
        await engine.close()


async def test_connect_to_nothing_is_network() -> None:
    from tests.support.procs import free_port

    engine, _rec, _ = make_engine(f"ws://127.0.0.1:{free_port()}/ws")
    with pytest.raises(ConnectFailed) as info:
        await engine.connect()
    assert info.value.cause is Cause.NETWORK


async def test_unreadable_credentials_are_auth_failure(sim: running_simulator) -> None:
    engine, _rec, _ = make_engine(sim.ws_url, store=MemoryCredentialStore(b"garbage"))
    with pytest.raises(ConnectFailed) as info:
        await engine.connect()
    assert info.value.cause is Cause.AUTH_FAILURE


# ------------------------------------------------------------------ engine-initiated


async def test_logout_online_unlinks_and_wipes_without_event(sim: running_simulator) -> None:
    engine, rec, store = await linked(sim)
    saved = store.data
    try:
        await engine.logout()
        assert store.data is None
        await settle(sim)
        assert len(rec.lost()) == 1  # only the pairing restart
        other, _, _ = make_engine(sim.ws_url, store=MemoryCredentialStore(saved))
        with pytest.raises(ConnectFailed) as info:
            await other.connect()
        assert info.value.cause is Cause.LOGGED_OUT
    finally:
        await engine.close()


async def test_logout_offline_unlinks_the_device(sim: running_simulator) -> None:
    engine, _rec, store = await linked(sim)
    saved = store.data
    await engine.disconnect()
    await engine.logout()
    assert store.data is None
    other, _, _ = make_engine(sim.ws_url, store=MemoryCredentialStore(saved))
    with pytest.raises(ConnectFailed) as info:
        await other.connect()
    assert info.value.cause is Cause.LOGGED_OUT


async def test_double_connect_is_refused_and_close_reaps_tasks(sim: running_simulator) -> None:
    engine, _rec, _ = await linked(sim)
    with pytest.raises(EngineError):
        await engine.connect()
    assert engine_tasks()
    await engine.close()
    await engine.close()  # idempotent
    assert engine_tasks() == []
    with pytest.raises(EngineError):
        await engine.connect()


async def test_disconnect_from_inside_the_sink(sim: running_simulator) -> None:
    engine, rec, _ = await linked(sim)

    async def on_event(event: object) -> None:
        if isinstance(event, IncomingMessage):
            await engine.disconnect()

    rec.on_event = on_event
    try:
        await sim.inbound(PHONE, "+1", "a")
        await sim.inbound(PHONE, "+1", "b")
        await rec.wait_for(IncomingMessage)
        await settle(sim)
        assert len(rec.of(IncomingMessage)) == 1
        assert len(rec.lost()) == 1
        assert not engine.connected
    finally:
        await engine.close()
    assert engine_tasks() == []


def test_constructor_matches_the_factory() -> None:
    from pathlib import Path

    from wafleet.config import load_settings
    from wafleet.engines.base import Engine, EngineContext
    from wafleet.engines.factory import build_engine

    async def sink(_e: object) -> None:
        return None

    ctx = EngineContext("t", Path("/nonexistent"), MemoryCredentialStore(), sink)
    engine = build_engine(load_settings(engine="simulator"), ctx)
    assert isinstance(engine, SimulatorEngine)
    assert isinstance(engine, Engine)
