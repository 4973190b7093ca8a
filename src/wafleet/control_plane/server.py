"""Running the control plane: `serve_control_plane` is a coroutine that `wafleet up` runs
in its own event loop next to the other components; `wafleet control-plane` runs it alone
(cli/cmd_control_plane.py) with the signal handlers of the top-level runner.

No signal handlers are installed here: uvicorn's are disabled, and the caller stops the
server by setting ``stop`` or by cancelling the coroutine (both shut down gracefully,
within `SHUTDOWN_TIMEOUT` seconds for in-flight requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import uvicorn

from wafleet.config import Settings
from wafleet.control_plane.app import create_app
from wafleet.errors import WafleetError

SHUTDOWN_TIMEOUT = 10


class ListenError(WafleetError):
    """The address cannot be listened on (in use, not local ...): exit 1."""


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, ready: asyncio.Event | None) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.ready is not None:
            self.ready.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Signal handlers belong to the top-level runner only.
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn so a busy port is one clear error, not a sys.exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.set_inheritable(True)
    return sock


async def serve_control_plane(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8100,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set or the task is cancelled; ``ready`` is set once the
    socket accepts connections. Raises ConfigError (bad portal key) or ListenError before
    serving anything."""
    app = create_app(settings)
    sock = bind_socket(host, port)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=SHUTDOWN_TIMEOUT,
        server_header=False,
    )
    server = _Server(config, ready)
    serve_task = asyncio.create_task(server.serve(sockets=[sock]), name="control-plane:uvicorn")
    watchers: list[asyncio.Task[None]] = []
    try:
        if stop is not None:
            watchers.append(
                asyncio.create_task(_await_stop(server, stop), name="control-plane:stop")
            )
        await asyncio.shield(serve_task)
    except asyncio.CancelledError:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serve_task, SHUTDOWN_TIMEOUT + 5)
        raise
    finally:
        for w in watchers:
            w.cancel()
        for w in watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await w
        sock.close()


async def _await_stop(server: uvicorn.Server, stop: asyncio.Event) -> None:
    await stop.wait()
    server.should_exit = True
