"""``wafleet up [--simulator]``: migrate, then run every component in one process."""

from __future__ import annotations

import asyncio
import secrets

import typer

from wafleet.cli.app import app, settings
from wafleet.cli.runtime import run_service
from wafleet.errors import ConfigError, WafleetError

INITIAL_ADMIN_EMAIL = "admin@wafleet.local"
INITIAL_ADMIN_FILE = "initial-admin.txt"


@app.command()
def up(
    simulator: bool = typer.Option(
        False, "--simulator", help="Also run the WhatsApp simulator and use it as the engine."
    ),
    host: str = typer.Option("127.0.0.1", help="Portal address."),
    port: int = typer.Option(8000, help="Portal port."),
    control_plane_port: int = typer.Option(8100, help="Control plane port (on 127.0.0.1)."),
    simulator_port: int = typer.Option(8300, help="Simulator port (with --simulator)."),
    simulator_time_scale: float = typer.Option(
        1.0, help="Simulator durations multiplier (tests use e.g. 0.05)."
    ),
) -> None:
    """Migrate, then run control plane, portal, worker (and simulator) until Ctrl-C."""
    for name, value in (
        ("--port", port),
        ("--control-plane-port", control_plane_port),
        ("--simulator-port", simulator_port),
    ):
        if not 0 < value < 65536:
            raise ConfigError(f"{name}: {value} is not a port number (1-65535)")
    overrides: dict[str, object] = {"control_plane_url": f"http://127.0.0.1:{control_plane_port}"}
    if simulator:
        overrides["engine"] = "simulator"
        overrides["simulator_url"] = f"ws://127.0.0.1:{simulator_port}/ws"
    cfg = settings(**overrides)
    cfg.resolve_portal_key(generate=True)

    from wafleet.db.migrate import upgrade
    from wafleet.logging import configure_logging, shutdown_logging

    configure_logging(level=cfg.log_level, fmt=cfg.log_format, logs_dir=cfg.logs_dir)
    upgrade(cfg.database_url)
    admin_note = _ensure_first_admin(cfg)

    async def main(stop: asyncio.Event) -> int:
        from wafleet.cli.servers import EmbeddedServer
        from wafleet.control_plane.app import create_app as create_cp
        from wafleet.db.engine import Database
        from wafleet.portal.app import create_app as create_portal
        from wafleet.worker.supervisor import Supervisor

        started: list[object] = []
        sim_server = None
        db = Database(cfg.database_url, pool_size=10)
        supervisor = Supervisor(cfg, db)
        try:
            if simulator:
                from wafleet.simulator.server import SimulatorServer

                sim_server = SimulatorServer(
                    "127.0.0.1", simulator_port, time_scale=simulator_time_scale
                )
                await sim_server.start()
            cp = EmbeddedServer(create_cp(cfg), "127.0.0.1", control_plane_port, "control-plane")
            await cp.start()
            started.append(cp)
            portal = EmbeddedServer(create_portal(cfg), host, port, "portal")
            await portal.start()
            started.append(portal)
            await supervisor.start()
            typer.echo(f"wafleet is up: portal http://{host}:{port}/  (Ctrl-C to stop)")
            typer.echo(f"control plane http://127.0.0.1:{control_plane_port}/healthz")
            if sim_server is not None:
                typer.echo(
                    f"simulator (phone page): http://127.0.0.1:{simulator_port}/ — "
                    "scan QR codes and chat there"
                )
            if admin_note:
                typer.echo(admin_note)
            await stop.wait()
            typer.echo("stopping: draining chats, disconnecting sessions ...")
        finally:
            await supervisor.stop()
            for server in reversed(started):
                assert isinstance(server, EmbeddedServer)
                await server.stop()
            if sim_server is not None:
                await sim_server.stop()
            await db.close()
        return 0

    try:
        code = run_service(main)
    except OSError as err:  # a port in use, most often
        raise WafleetError(f"up: cannot start: {err.strerror or err}") from None
    finally:
        shutdown_logging()
    raise typer.Exit(code)


def _ensure_first_admin(cfg: object) -> str | None:
    """On the very first start, create an admin and tell how to log in."""
    from wafleet.cli.app import run
    from wafleet.cli.common import open_db
    from wafleet.config import Settings
    from wafleet.db.repositories import UserRepository

    assert isinstance(cfg, Settings)
    path = cfg.data_dir / INITIAL_ADMIN_FILE

    async def _go() -> str | None:
        async with open_db(cfg) as db, db.session() as s, s.begin():
            repo = UserRepository(s)
            if await repo.count() > 0:
                return None
            password = secrets.token_urlsafe(12)
            await repo.create(INITIAL_ADMIN_EMAIL, password, is_admin=True)
        import os

        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{INITIAL_ADMIN_EMAIL}\n{password}\n")
        return (
            f"first start: log in as {INITIAL_ADMIN_EMAIL} with password {password} "
            f"(also in {path}); create tenants with `wafleet tenant create`"
        )

    result: str | None = run(_go)
    if result is None and path.exists():
        return f"log in with the admin account in {path} (or `wafleet user create`)"
    return result
