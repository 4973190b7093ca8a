"""A uvicorn server run as a task inside our own event loop (``wafleet up``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp


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
