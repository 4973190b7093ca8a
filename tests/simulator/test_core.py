"""The simulator core without sockets: injected clock and sleep, frames read off `Conn`s."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from wafleet.simulator.connection import ONLINE, QR, Conn
from wafleet.simulator.core import Simulator
from wafleet.simulator.errors import ApiError
from wafleet.simulator.faults import Fault, FaultTable
from wafleet.simulator.protocol import coalesce


class FakeTime:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = datetime(2030, 1, 1, tzinfo=UTC)
        self.slept: list[float] = []
        self.auto = False  # True: sleeps return at once (advancing the clock); else they park

    def clock(self) -> float:
        return self.mono

    def now(self) -> datetime:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if not self.auto:
            await asyncio.Event().wait()  # parked until the task is cancelled
        self.advance(seconds)
        await asyncio.sleep(0)


def frames(conn: Conn) -> list[dict[str, Any]]:
    out = [json.loads(t) for t in coalesce(list(conn._out))]
    conn._out.clear()
    return out


def make(scale: float = 1.0, idle_timeout: float = 0.0) -> tuple[Simulator, FakeTime]:
    t = FakeTime()
    sim = Simulator(
        time_scale=scale, idle_timeout=idle_timeout, clock=t.clock, now=t.now, sleep=t.sleep
    )
    return sim, t


def connect(sim: Simulator, token: str | None = None) -> Conn:
    verdict, conn = sim.handshake(token)
    assert verdict == "ok"
    assert conn is not None
    sim.frame(conn, json.dumps({"type": "hello", "creds": token}))
    return conn


async def link(sim: Simulator, phone: str) -> str:
    conn = connect(sim)
    await asyncio.sleep(0)  # the QR task shows its first code
    code = frames(conn)[0]["code"]
    sim.scan(code, phone)
    paired = frames(conn)
    assert [f["type"] for f in paired] == ["pair_success", "close"]
    sim.closed(conn)
    return str(paired[0]["creds"])


def test_fault_table_expiry_is_lazy_and_by_clock() -> None:
    t = FakeTime()
    table = FaultTable(t.clock)
    table.add(Fault("refuse", "+1555", t.mono + 5))
    table.add(Fault("blackhole", "*", None))
    assert table.active("refuse", "+1555") is not None
    assert table.active("refuse", "+1666") is None
    assert table.active("blackhole", None) is not None  # "*" hits phoneless connections too
    t.advance(5)
    assert table.active("refuse", "+1555") is None
    assert [f.kind for f in table.listing()] == ["blackhole"]
    assert table.clear("+1555") == 0
    assert table.clear() == 1


async def test_qr_rotation_schedule_scaled() -> None:
    sim, t = make(scale=0.5)
    t.auto = True
    conn = connect(sim)
    assert conn.state == QR
    task = conn.qr_task
    assert task is not None
    await task
    assert t.slept == [30.0, 10.0, 10.0, 10.0, 10.0, 10.0]
    sent = frames(conn)
    assert [f["type"] for f in sent] == ["qr"] * 6 + ["close"]
    assert sent[-1]["reason"] == "qr_timeout"
    assert len({f["code"] for f in sent[:6]}) == 6
    first_expiry = datetime.fromisoformat(sent[0]["expires_at"])
    assert first_expiry - datetime(2030, 1, 1, tzinfo=UTC) == timedelta(seconds=30)
    assert sim.pairing.codes == {}


async def test_temp_ban_by_clock() -> None:
    sim, t = make(scale=0.1)
    token = await link(sim, "+15550001")
    online = connect(sim, token)
    assert online.state == ONLINE
    frames(online)
    answer = sim.add_fault("temp_ban", "+15550001", 100)  # 100 s * 0.1 = 10 s
    assert answer["expires_at"] == (t.wall + timedelta(seconds=10)).isoformat()
    assert frames(online)[-1]["reason"] == "temp_banned"
    refused = connect(sim, token)
    assert frames(refused)[0]["type"] == "login_failed"
    t.advance(10)
    assert frames(connect(sim, token))[0]["type"] == "connected"


async def test_session_run_twice_counts_two() -> None:
    sim, _ = make()
    token = await link(sim, "+15550001")
    first = connect(sim, token)
    second = connect(sim, token)
    assert sim.max_concurrent == {"+15550001": 2}
    assert frames(first)[-1]["reason"] == "replaced"
    assert frames(second)[0]["type"] == "connected"
    assert sim.connect_attempts == {"+15550001": 2}


async def test_inbound_is_merged_per_connection_and_kept_in_order() -> None:
    sim, _ = make()
    token = await link(sim, "+15550001")
    conn = connect(sim, token)
    frames(conn)
    ids = sim.inbound([("+15550001", "+1", "a"), ("+15550001", "+2", "b")])
    ids += sim.inbound([("+15550001", "+1", "c")])
    sent = frames(conn)
    assert len(sent) == 1  # one merged `messages` frame
    assert [m["id"] for m in sent[0]["items"]] == ids
    with pytest.raises(ApiError) as info:
        sim.inbound([("+15550001", "+1", "ok"), ("+19999999", "+1", "no")])
    assert info.value.status == 404
    assert len(sim.accounts["+15550001"].pending) == 3  # the refused batch added nothing


async def test_drop_and_refuse_at_handshake() -> None:
    sim, t = make()
    token = await link(sim, "+15550001")
    sim.add_fault("refuse", "+15550001", 5)
    assert sim.handshake(token)[0] == "refuse"
    assert sim.handshake(None)[0] == "ok"  # a phone's fault does not hit QR connections
    t.advance(5)
    sim.add_fault("drop", "*", 5)
    assert sim.handshake(token)[0] == "drop"
    assert sim.handshake(None)[0] == "drop"
    sim.clear_faults(None)
    assert sim.handshake(token)[0] == "ok"


async def test_idle_client_is_dropped_after_idle_timeout_but_pinging_one_is_not() -> None:
    sim, t = make(idle_timeout=10.0)
    creds1 = await link(sim, "+15550001")
    creds2 = await link(sim, "+15550002")
    silent = connect(sim, creds1)
    chatty = connect(sim, creds2)
    assert silent.state == ONLINE and chatty.state == ONLINE
    for _ in range(6):  # 6 x 2.5 s = 15 s: only the chatty client pings
        t.advance(2.5)
        sim.frame(chatty, json.dumps({"type": "ping", "id": 1}))
        sim.reap_idle()
    assert silent.closing and silent._abort  # dropped like a dead TCP peer
    assert not chatty.closing
    await sim.aclose()
