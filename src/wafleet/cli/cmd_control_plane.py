"""``wafleet control-plane --host --port``: the internal API alone (``wafleet up`` runs
the same `serve_control_plane` coroutine inside its own loop)."""

from __future__ import annotations

import typer

from wafleet.cli.app import app, settings
from wafleet.errors import ConfigError


@app.command("control-plane")
def control_plane(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8100, "--port", min=1, max=65535, help="Port to listen on."),
    migrate: bool = typer.Option(
        True, "--migrate/--no-migrate", help="Upgrade the schema before serving (default)."
    ),
) -> None:
    """Run the control plane: internal API, stale-worker job and /metrics."""
    import asyncio
    import signal

    from wafleet.control_plane.server import serve_control_plane
    from wafleet.logging import configure_logging, get_logger, shutdown_logging

    cfg = settings()
    cfg.resolve_portal_key()  # refuse to start without a valid key (one line, exit 2)
    configure_logging(level=cfg.log_level, fmt=cfg.log_format, logs_dir=cfg.logs_dir)
    log = get_logger("wafleet.control_plane")
    if migrate:
        _migrate(cfg.database_url)

    async def _main() -> None:
        stop = asyncio.Event()
        ready = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        server = asyncio.create_task(
            serve_control_plane(cfg, host, port, ready=ready, stop=stop),
            name="control-plane",
        )
        ready_wait = asyncio.create_task(ready.wait(), name="control-plane:ready-log")
        done, _ = await asyncio.wait({server, ready_wait}, return_when=asyncio.FIRST_COMPLETED)
        if ready_wait in done:
            log.info("control plane listening", url=f"http://{host}:{port}")
        else:
            ready_wait.cancel()
        await server

    try:
        asyncio.run(_main())
    finally:
        shutdown_logging()


def _migrate(database_url: str) -> None:
    import logging

    from wafleet.db import migrate as m

    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per revision is noise
    try:
        m.upgrade(database_url)
    except Exception as err:  # any driver/alembic failure: one line naming the variable
        first = str(getattr(err, "orig", err)).splitlines()
        raise ConfigError(
            f"WAFLEET_DATABASE_URL: cannot migrate the database: "
            f"{first[0] if first else type(err).__name__}"
        ) from None
