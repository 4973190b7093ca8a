"""``wafleet worker``: one Supervisor in this process until told to stop."""

from __future__ import annotations

import asyncio

from wafleet.config import Settings
from wafleet.db.engine import Database
from wafleet.logging import get_logger
from wafleet.worker.supervisor import Supervisor

log = get_logger("wafleet.worker")
SHUTDOWN_TIMEOUT = 20.0


async def run_worker(settings: Settings, stop: asyncio.Event) -> int:
    db = Database(settings.database_url, pool_size=10)
    supervisor = Supervisor(settings, db)
    try:
        await supervisor.start()
        await stop.wait()
        log.info("stopping worker (draining, disconnecting)")
        await asyncio.wait_for(supervisor.stop(SHUTDOWN_TIMEOUT), SHUTDOWN_TIMEOUT + 5)
    finally:
        await db.close()
    return 0
