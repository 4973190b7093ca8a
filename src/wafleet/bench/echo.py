"""The pipeline baseline: a minimal echo client with no database and no queue.

``python -m wafleet.bench.echo CREDS.json WS_URL`` logs in one `SimulatorEngine` per
paired phone (credentials from the JSON file ``{phone: creds}``) and answers every inbound
message at once: ack, then ``send_text`` with the reply id ``R-<inbound id>`` (the id the
worker's outbox uses) and, as text, the inbound message's simulator timestamp — so the
bench can read each message's latency from ``/sim/outbound`` alone. Prints ``ready`` when
every engine is logged in; runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

from wafleet.engines.base import Connected, EngineContext, EngineEvent, IncomingMessage
from wafleet.engines.credentials import MemoryCredentialStore
from wafleet.engines.simulator import SimulatorEngine


class EchoClient:
    def __init__(self, phone: str, creds: bytes, url: str) -> None:
        self.connected = asyncio.Event()
        self._replies: set[asyncio.Task[None]] = set()
        store = MemoryCredentialStore(creds)
        ctx = EngineContext(f"echo-{phone}", Path("/nonexistent"), store, self.sink)
        self.engine = SimulatorEngine(
            ctx, url=url, keepalive_interval=15, keepalive_timeout=10, connect_timeout=30
        )

    async def sink(self, ev: EngineEvent) -> None:
        if isinstance(ev, IncomingMessage):
            await self.engine.ack(ev.id)
            task = asyncio.create_task(
                self.engine.send_text(ev.chat, ev.at.isoformat(), f"R-{ev.id}"),
                name=f"echo-reply-{ev.id}",
            )
            self._replies.add(task)
            task.add_done_callback(self._replies.discard)
        elif isinstance(ev, Connected):
            self.connected.set()


async def main(creds: dict[str, str], url: str) -> None:
    clients = [EchoClient(phone, c.encode(), url) for phone, c in creds.items()]
    sem = asyncio.Semaphore(50)

    async def start(c: EchoClient) -> None:
        async with sem:
            await c.engine.connect()
            await c.connected.wait()

    await asyncio.gather(*(start(c) for c in clients))
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await asyncio.gather(*(c.engine.close() for c in clients), return_exceptions=True)


if __name__ == "__main__":
    try:
        import uvloop  # the worker runs on uvloop too: same footing
    except ImportError:  # pragma: no cover
        asyncio.run(main(json.loads(Path(sys.argv[1]).read_text()), sys.argv[2]))
    else:
        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(main(json.loads(Path(sys.argv[1]).read_text()), sys.argv[2]))
