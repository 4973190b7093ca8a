"""Live-connection paths of the engine against a scripted child process (real processes,
real protocol; see fake_child.py for why not neonize itself) and the QR timer."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import timedelta
from pathlib import Path

import pytest

from wafleet.engines.base import (
    Connected,
    ConnectionLost,
    KeepAliveTimeout,
    NotConnected,
    QrCode,
    QrTimeout,
)
from wafleet.engines.neonize.qr import QrSchedule
from wafleet.states import Cause
from wafleet.worker.clock import FakeClock, ManualClock

from .helpers import fake_child_factory, make_engine, wait_dead


async def test_crash_of_a_live_child_is_one_engine_crash(tmp_path: Path) -> None:
    engine, rec = make_engine(
        tmp_path, ping_interval=None, child_factory=fake_child_factory("acme", "connected")
    )
    await engine.connect()
    await rec.wait_for(lambda e: isinstance(e, Connected))
    pid = engine.child_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    lost = await rec.wait_for(lambda e: isinstance(e, ConnectionLost))
    assert lost.cause is Cause.ENGINE_CRASH
    assert "signal 9" in lost.detail
    await asyncio.sleep(0.2)
    assert len(rec.lost()) == 1
    # the next connect starts a fresh child
    await engine.connect()
    assert engine.child_pid not in (None, pid)
    await engine.close()
    assert len(rec.lost()) == 1  # close() after a live connect emits nothing


async def test_go_fatal_error_abort_is_an_engine_crash(tmp_path: Path) -> None:
    engine, rec = make_engine(
        tmp_path,
        ping_interval=None,
        child_factory=fake_child_factory("acme", "connected,abort_on_send"),
    )
    await engine.connect()
    await rec.wait_for(lambda e: isinstance(e, Connected))
    with pytest.raises(NotConnected):
        await engine.send_text("+15559999", "hi", "m-1")
    lost = await rec.wait_for(lambda e: isinstance(e, ConnectionLost))
    assert lost.cause is Cause.ENGINE_CRASH
    assert "signal 6" in lost.detail  # SIGABRT: what a Go "fatal error" ends with
    await engine.close()
    assert len(rec.lost()) == 1


async def test_hung_child_is_killed_and_reported(tmp_path: Path) -> None:
    engine, rec = make_engine(
        tmp_path,
        ping_interval=None,
        request_timeout=1.0,
        child_factory=fake_child_factory("acme", "connected,hang_send"),
    )
    await engine.connect()
    await rec.wait_for(lambda e: isinstance(e, Connected))
    pid = engine.child_pid
    assert pid is not None
    with pytest.raises(NotConnected, match="did not answer"):
        await engine.send_text("+15559999", "hi", "m-1")
    lost = await rec.wait_for(lambda e: isinstance(e, ConnectionLost))
    assert lost.cause is Cause.ENGINE_CRASH
    assert "hung" in lost.detail
    assert await wait_dead(pid)
    await asyncio.sleep(0.2)
    assert len(rec.lost()) == 1
    await engine.close()


async def test_send_and_disconnect_emit_no_loss(tmp_path: Path) -> None:
    engine, rec = make_engine(
        tmp_path, ping_interval=0.05, child_factory=fake_child_factory("acme", "connected")
    )
    await engine.connect()
    await rec.wait_for(lambda e: isinstance(e, Connected))
    await engine.send_text("+15559999", "hi", "m-1")
    await asyncio.sleep(0.2)  # a few liveness pings answered
    pid = engine.child_pid
    assert pid is not None
    await engine.disconnect()
    assert await wait_dead(pid)
    assert rec.lost() == []
    with pytest.raises(NotConnected):
        await engine.send_text("+15559999", "hi", "m-2")
    await engine.close()
    await engine.close()  # idempotent


async def test_qr_expiry_without_scan_is_one_qr_timeout(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, rec = make_engine(
        tmp_path,
        ping_interval=None,
        clock=clock.monotonic,
        sleep=clock.sleep,
        now=clock.now,
        child_factory=fake_child_factory("acme", "qr"),
    )
    start = clock.now()
    await engine.connect()
    qr = await rec.wait_for(lambda e: isinstance(e, QrCode))
    assert qr.code == "2@fake-1"
    assert qr.expires_at == start + timedelta(seconds=60)
    lost = await rec.wait_for(lambda e: isinstance(e, ConnectionLost))
    assert isinstance(lost, QrTimeout)
    assert lost.cause is Cause.QR_TIMEOUT
    # no further code came from the child: given up 5 s (rotation grace) after expiry
    assert clock.monotonic() == pytest.approx(65.0)
    await asyncio.sleep(0.1)
    assert len(rec.lost()) == 1
    await engine.close()


async def test_pair_phone_needs_a_qr_waiting_connection(tmp_path: Path) -> None:
    engine, _ = make_engine(
        tmp_path, ping_interval=None, child_factory=fake_child_factory("acme", "connected")
    )
    with pytest.raises(NotConnected):
        await engine.pair_phone("+15550001")
    await engine.close()


def test_qr_schedule_mirrors_whatsmeow_rotation() -> None:
    qr = QrSchedule()
    assert qr.deadline() is None
    assert qr.on_code(0.0) == 60.0
    assert qr.deadline() == 65.0  # expiry + grace while more codes are due
    t = 60.0
    for _ in range(5):
        assert qr.on_code(t) == 20.0
        t += 20.0
    assert qr.last
    assert qr.deadline() == 160.0  # the sixth code's expiry ends the attempt, no grace
    assert not qr.timed_out(159.9)
    assert qr.timed_out(160.0)
    qr.reset()
    assert qr.deadline() is None


async def test_unrestored_keepalive_ends_the_connection(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, rec = make_engine(
        tmp_path,
        ping_interval=None,
        clock=clock.monotonic,
        sleep=clock.sleep,
        child_factory=fake_child_factory("acme", "connected,keepalive"),
    )
    await engine.connect()
    await rec.wait_for(lambda e: isinstance(e, KeepAliveTimeout))
    lost = await rec.wait_for(lambda e: isinstance(e, ConnectionLost))
    assert lost.cause is Cause.KEEPALIVE_TIMEOUT
    # WAFLEET_KEEPALIVE_INTERVAL + WAFLEET_KEEPALIVE_TIMEOUT (15 + 10 by default)
    assert clock.monotonic() == pytest.approx(25.0)
    await engine.close()
    assert len(rec.lost()) == 1


async def test_six_codes_then_whatsmeow_closing_is_a_qr_timeout(tmp_path: Path) -> None:
    clock = ManualClock()
    engine, rec = make_engine(
        tmp_path,
        ping_interval=None,
        clock=clock.monotonic,
        sleep=clock.sleep,
        now=clock.now,
        child_factory=fake_child_factory("acme", "qr6,drop_on_ping"),
    )
    start = clock.now()
    await engine.connect()
    await rec.wait_for(lambda e: isinstance(e, QrCode) and e.code == "2@fake-6")
    codes = [e for e in rec.events if isinstance(e, QrCode)]
    assert [c.expires_at for c in codes] == [
        start + timedelta(seconds=s) for s in (60, 20, 20, 20, 20, 20)
    ]
    clock.advance(18.0)  # just before our own timer would fire for the 6th code
    assert engine._conn is not None
    await engine._conn.child.request("ping", timeout=5)  # the fake closes the connection
    lost = await rec.wait_for(lambda e: isinstance(e, ConnectionLost))
    assert isinstance(lost, QrTimeout)
    await asyncio.sleep(0.1)
    assert len(rec.lost()) == 1
    await engine.close()


async def test_a_close_while_codes_remain_is_a_network_loss(tmp_path: Path) -> None:
    clock = ManualClock()
    engine, rec = make_engine(
        tmp_path,
        ping_interval=None,
        clock=clock.monotonic,
        sleep=clock.sleep,
        now=clock.now,
        child_factory=fake_child_factory("acme", "qr,drop_on_ping"),
    )
    await engine.connect()
    await rec.wait_for(lambda e: isinstance(e, QrCode))
    assert engine._conn is not None
    await engine._conn.child.request("ping", timeout=5)
    lost = await rec.wait_for(lambda e: isinstance(e, ConnectionLost))
    assert type(lost) is ConnectionLost
    assert lost.cause is Cause.NETWORK
    await engine.close()
