"""``wafleet portal`` and `serve_portal`, the coroutine ``wafleet up`` runs in its loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import typer

from wafleet.cli.app import app, run, settings

if TYPE_CHECKING:
    from wafleet.config import Settings

SHUTDOWN_GRACE_S = 5


async def serve_portal(
    cfg: Settings,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    **app_options: Any,
) -> None:
    """Serve the portal until ``stop`` is set (or the task is cancelled), then shut down
    within `SHUTDOWN_GRACE_S`: open SSE streams end first, then uvicorn drains.

    Installs no signal handlers: the caller (the top-level runner) owns signals.
    ``ready`` is set once the socket listens. ``app_options`` go to `create_app`.
    Raises ConfigError (via create_app) when there is no valid portal key.
    """
    import uvicorn

    from wafleet.portal.app import create_app, portal_context

    application = create_app(cfg, **app_options)
    ctx = portal_context(application)

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield  # signals belong to the runner, not to one of several servers

        async def shutdown(self, sockets: Any = None) -> None:
            ctx.stopping.set()  # ends the SSE loops so uvicorn need not wait for them
            await super().shutdown(sockets=sockets)

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if ready is not None and self.started:
                ready.set()

    from wafleet.control_plane.server import bind_socket

    sock = bind_socket(host, port)  # a busy port is one clear error (ListenError), exit 1
    config = uvicorn.Config(
        application,
        log_config=None,  # our structlog/stdlib setup, not uvicorn's
        access_log=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        proxy_headers=True,
        lifespan="on",
        server_header=False,
    )
    server = _Server(config)
    serve = asyncio.create_task(server.serve(sockets=[sock]), name="portal:uvicorn")
    waiter = asyncio.create_task((stop or asyncio.Event()).wait(), name="portal:stop-wait")
    try:
        await asyncio.wait({serve, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Reached on `stop`, on the server ending by itself, and on cancellation.
        server.should_exit = True
        ctx.stopping.set()
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        try:
            await asyncio.wait_for(asyncio.shield(serve), timeout=SHUTDOWN_GRACE_S + 5)
        except TimeoutError:
            server.force_exit = True
            serve.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serve
        sock.close()
    if not serve.cancelled() and (exc := serve.exception()) is not None:
        raise exc


@app.command("portal")
def portal(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
) -> None:
    """Run the web portal (proxies to the control plane at WAFLEET_CONTROL_PLANE_URL)."""
    import signal

    from wafleet.cli.common import open_db
    from wafleet.logging import configure_logging, shutdown_logging

    cfg = settings()
    cfg.resolve_portal_key()  # one line + exit 2 before anything starts
    configure_logging(level=cfg.log_level, fmt=cfg.log_format)

    async def _go() -> None:
        async with open_db(cfg):  # refuses a database that was never migrated
            pass
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await serve_portal(cfg, host, port, stop=stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        run(_go)
    finally:
        shutdown_logging()
