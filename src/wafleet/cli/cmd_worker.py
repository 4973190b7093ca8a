"""``wafleet worker``."""

from __future__ import annotations

import asyncio

from wafleet.cli.app import app, settings
from wafleet.cli.runtime import check_schema, run_service


@app.command()
def worker() -> None:
    """Run a worker: claims tenants and keeps one bot per tenant connected."""
    import typer

    from wafleet.logging import configure_logging, shutdown_logging
    from wafleet.worker.runner import run_worker

    cfg = settings()
    configure_logging(level=cfg.log_level, fmt=cfg.log_format, logs_dir=cfg.logs_dir)
    check_schema(cfg)

    async def main(stop: asyncio.Event) -> int:
        return await run_worker(cfg, stop)

    try:
        code = run_service(main)
    finally:
        shutdown_logging()
    raise typer.Exit(code)
