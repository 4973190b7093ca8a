"""The real engine on this machine, which has no route to WhatsApp: real neonize children."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from wafleet.config import Settings
from wafleet.engines.base import ConnectFailed
from wafleet.logging import configure_logging, shutdown_logging, tenant_writer
from wafleet.states import Cause

from .helpers import Blackhole, engine_children, make_engine, open_fds, pid_alive

pytestmark = pytest.mark.slow

REPEATS = 20


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.close()


async def test_offline_connect_fails_with_network_repeatedly_without_leaks(tmp_path: Path) -> None:
    engine, rec = make_engine(tmp_path)
    # One warm-up: the event loop creates its child watcher etc. on first use.
    with pytest.raises(ConnectFailed):
        await engine.connect()
    fds_before = open_fds()
    for _ in range(REPEATS):
        started = time.monotonic()
        with pytest.raises(ConnectFailed) as failed:
            await engine.connect()
        assert failed.value.cause is Cause.NETWORK, failed.value
        assert "dial" in failed.value.detail
        assert time.monotonic() - started < 20  # bounded: no hidden retries, no hang
        assert engine.child_pid is None
    assert open_fds() == fds_before
    assert engine_children() == []
    started = time.monotonic()
    await engine.close()
    assert time.monotonic() - started < 5
    assert rec.events == []  # a failed connect is reported by raising, not by events
    session_dir = tmp_path / "sessions" / "acme"
    assert stat.S_IMODE(session_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((session_dir / "neonize.db").stat().st_mode) == 0o600


async def test_hung_dial_is_cut_by_the_connect_deadline(
    tmp_path: Path, blackhole: Blackhole
) -> None:
    engine, rec = make_engine(
        tmp_path, extra={"neonize_proxy": blackhole.proxy}, connect_timeout=3.0
    )
    task = asyncio.create_task(engine.connect())
    while engine.child_pid is None:
        await asyncio.sleep(0.02)
    pid = engine.child_pid
    started = time.monotonic()
    with pytest.raises(ConnectFailed) as failed:
        await task
    assert failed.value.cause is Cause.NETWORK
    assert "hung dial" in failed.value.detail
    assert time.monotonic() - started < 10
    assert not pid_alive(pid)  # neonize's stop() would block for minutes: it was killed
    await engine.close()
    assert engine_children() == []
    assert rec.events == []


async def test_killed_child_is_detected_and_replaced(tmp_path: Path, blackhole: Blackhole) -> None:
    engine, _rec = make_engine(
        tmp_path, extra={"neonize_proxy": blackhole.proxy}, connect_timeout=25.0
    )
    task = asyncio.create_task(engine.connect())
    blackhole.sock.settimeout(20)
    dialled, _ = await asyncio.to_thread(blackhole.sock.accept)  # the child is dialling
    pid = engine.child_pid
    assert pid is not None
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ConnectFailed) as failed:
        await task
    assert time.monotonic() - started < 10  # noticed at once, not at the connect deadline
    assert failed.value.cause is Cause.ENGINE_CRASH
    assert "signal 9" in failed.value.detail
    dialled.close()
    # The next connect gets a fresh child (and, offline, the ordinary network failure).
    engine.proxy = None
    with pytest.raises(ConnectFailed) as again:
        await engine.connect()
    assert again.value.cause is Cause.NETWORK
    await engine.close()
    assert engine_children() == []


async def test_go_log_lines_land_in_the_tenant_log(tmp_path: Path, blackhole: Blackhole) -> None:
    logs_dir = tmp_path / "logs"
    configure_logging(level="DEBUG", fmt="json", logs_dir=logs_dir, stream=io.StringIO())
    try:
        engine, _ = make_engine(
            tmp_path,
            slug="shop-7",
            settings=Settings(data_dir=tmp_path, log_level="DEBUG"),
            extra={"neonize_proxy": blackhole.proxy},
            connect_timeout=3.0,
        )
        with pytest.raises(ConnectFailed):
            await engine.connect()
        await engine.close()
        writer = tenant_writer()
        assert writer is not None
        writer.flush()
        lines = [json.loads(x) for x in (logs_dir / "shop-7.log").read_text().splitlines()]
    finally:
        shutdown_logging()
        structlog.reset_defaults()
    go_lines = [x for x in lines if str(x.get("source", "")).startswith("whatsmeow.")]
    assert go_lines, lines
    assert all(x["tenant"] == "shop-7" for x in go_lines)
    assert any("Dialing" in x["event"] for x in go_lines)
