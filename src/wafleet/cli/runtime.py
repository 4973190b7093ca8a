"""Top-level process runtime: the only place that installs signal handlers.

``run_service(main)`` runs ``main(stop_event)`` in a fresh event loop (uvloop when
available); the first SIGINT/SIGTERM sets ``stop_event`` for a graceful, bounded
shutdown, a second one exits at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable


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


def check_schema(cfg: object) -> None:
    """Refuse to start (exit 2, one line) when the database is unreachable or unmigrated."""
    from wafleet.cli.common import open_db
    from wafleet.config import Settings

    assert isinstance(cfg, Settings)

    async def _check() -> None:
        async with open_db(cfg):
            pass

    asyncio.run(_check())
