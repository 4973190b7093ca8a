"""Top-level process runtime: the only place that installs signal handlers.

``run_service(main)`` runs ``main(stop_event)`` in a fresh event loop (uvloop when
available); the first SIGINT/SIGTERM sets ``stop_event`` for a graceful, bounded
shutdown, a second one exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp


def run_service(main: Callable[[asyncio.Event], Awaitable[int | None]]) -> int:
    async def _entry() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        hits = 0

        def _on_signal(signum: int) -> None:
            nonlocal hits
            hits += 1
            if hits > 1:
                print("second signal: exiting now", file=sys.stderr)
                os._exit(130)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _on_signal, sig)
        try:
            return int(await main(stop) or 0)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        import uvloop

        return uvloop.run(_entry())
    except ImportError:  # pragma: no cover - uvloop is a dependency via uvicorn[standard]
        return asyncio.run(_entry())


class _QuietServer(uvicorn.Server):
    """uvicorn's server without its own signal capture: the runner owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class EmbeddedServer:
    """A uvicorn server run as a task inside our own loop (no signal handlers of its own)."""

    def __init__(self, app: FastAPI | ASGIApp, host: str, port: int, name: str) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
            ws_ping_interval=None,
        )
        self.server = _QuietServer(config)
        self.name = name
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve(), name=f"server:{self.name}")
        while not self.server.started:
            if self.task.done():
                await self.task  # raises the bind error
                raise RuntimeError(f"{self.name} server exited during start-up")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.task is None:
            return
        self.server.should_exit = True
        try:
            await asyncio.wait_for(self.task, 10)
        except TimeoutError:
            self.server.force_exit = True
            self.task.cancel()


def check_schema(cfg: object) -> None:
    """Refuse to start (exit 2, one line) when the database is unreachable or unmigrated."""
    from wafleet.cli.common import open_db
    from wafleet.config import Settings

    assert isinstance(cfg, Settings)

    async def _check() -> None:
        async with open_db(cfg):
            pass

    asyncio.run(_check())
