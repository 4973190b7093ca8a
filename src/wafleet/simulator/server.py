"""Running the simulator: in-process (`SimulatorServer`, for tests and benchmarks) or as
the ``wafleet simulator`` process (`serve`)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from wafleet.simulator.asgi import SimulatorApp
from wafleet.simulator.core import Simulator


def _config(app: SimulatorApp, **overrides: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        # The fastest of uvicorn's WebSocket implementations here; no compression and no
        # protocol-level pings (keepalive is an application frame, see protocol.py).
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_ping_interval=None,
        ws_ping_timeout=None,
        ws_max_size=64 * 1024 * 1024,
        lifespan="off",
        access_log=False,
        log_config=None,
        backlog=4096,
        timeout_graceful_shutdown=2,
        timeout_keep_alive=75,  # idle control-API clients (benchmarks) keep their connection
        **overrides,
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; raises OSError (address in use ...) before anything starts."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(4096)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal capture: in-process, the host program owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class SimulatorServer:
    """The simulator on the running event loop: ``port = await start()``; ``await stop()``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        time_scale: float = 1.0,
        idle_timeout: float = 60.0,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.sim = Simulator(time_scale=time_scale, idle_timeout=idle_timeout)
        self.app = SimulatorApp(self.sim)
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    async def start(self) -> int:
        self._sock = bind(self.host, self.requested_port)
        self.port = int(self._sock.getsockname()[1])
        self._server = _EmbeddedServer(_config(self.app, log_level="warning"))
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self._sock]), name=f"sim-server-{self.port}"
        )
        while not self._server.started:
            if self._task.done():
                self._task.result()  # re-raise the start-up failure
            await asyncio.sleep(0.01)
        return self.port

    async def stop(self) -> None:
        await self.sim.aclose()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._task), timeout=5)
            if not self._task.done():
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
        if self._sock is not None:
            self._sock.close()
        self._server = self._task = self._sock = None

    async def __aenter__(self) -> SimulatorServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def serve(
    host: str,
    port: int,
    time_scale: float,
    *,
    log_level: str = "warning",
    idle_timeout: float = 60.0,
) -> None:
    """Run until SIGINT/SIGTERM, then shut down gracefully (bounded) and return (exit 0)."""
    sock = bind(host, port)
    sim = Simulator(time_scale=time_scale, idle_timeout=idle_timeout)
    config = _config(SimulatorApp(sim), log_level=log_level, loop="auto")
    server = _EmbeddedServer(config)

    def _stop() -> None:
        if server.should_exit:
            server.force_exit = True  # a second signal: stop waiting for connections
        server.should_exit = True

    async def _run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _stop)
        try:
            await server.serve(sockets=[sock])
        finally:
            await sim.aclose()

    try:
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(_run())
    finally:
        sock.close()
