"""`serve_control_plane`, the coroutine `wafleet up` runs in its own loop: ready/stop
events, cancellation, busy port."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from tests.support.procs import free_port
from wafleet.config import Settings
from wafleet.control_plane.server import ListenError, serve_control_plane


async def test_ready_then_stop(settings: Settings):
    port = free_port()
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        serve_control_plane(settings, "127.0.0.1", port, ready=ready, stop=stop)
    )
    await asyncio.wait_for(ready.wait(), 30)
    async with httpx.AsyncClient() as c:
        resp = await c.get(f"http://127.0.0.1:{port}/healthz")
    assert resp.json() == {"status": "ok"}
    stop.set()
    await asyncio.wait_for(task, 30)
    assert_nothing_listens(port)


def assert_nothing_listens(port: int) -> None:
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


async def test_cancel_shuts_down(settings: Settings):
    port = free_port()
    ready = asyncio.Event()
    task = asyncio.create_task(serve_control_plane(settings, "127.0.0.1", port, ready=ready))
    await asyncio.wait_for(ready.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    assert_nothing_listens(port)


async def test_busy_port_is_a_listen_error(settings: Settings):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}"):
            await serve_control_plane(settings, "127.0.0.1", port)
