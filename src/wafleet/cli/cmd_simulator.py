"""``wafleet simulator`` — the simulated WhatsApp servers and phones."""

from __future__ import annotations

import typer

from wafleet.cli.app import app
from wafleet.errors import ConfigError, WafleetError


@app.command()
def simulator(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8300, help="Port (engines connect at ws://HOST:PORT/ws)."),
    time_scale: float = typer.Option(
        1.0, "--time-scale", help="Multiplies every duration (QR lifetimes, faults): 0.05 = 20x."
    ),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
    idle_timeout: float = typer.Option(
        60.0,
        "--idle-timeout",
        help="Drop a client silent (no frame, no ping) this many seconds; 0 disables.",
    ),
) -> None:
    """Run the WhatsApp simulator (control API at /sim/*, phone page at /)."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port: {port} is not a port number (0-65535)")
    if not time_scale > 0 or time_scale > 1000:
        raise ConfigError(f"--time-scale: must be > 0 and <= 1000, got {time_scale}")
    if idle_timeout < 0:
        raise ConfigError(f"--idle-timeout: must be >= 0, got {idle_timeout}")
    level = log_level.lower()
    if level not in {"critical", "error", "warning", "info", "debug"}:
        raise ConfigError(f"--log-level: unknown level {log_level!r}")
    from wafleet.simulator.server import bind, serve

    try:
        bind(host, port).close()  # fail with one line (address in use ...) before starting
    except OSError as err:
        raise WafleetError(f"simulator: cannot listen on {host}:{port}: {err.strerror}") from None
    typer.echo(
        f"simulator listening on http://{host}:{port} (engines: ws://{host}:{port}/ws), "
        f"time-scale {time_scale}",
    )
    serve(host, port, time_scale, log_level=level, idle_timeout=idle_timeout)
