"""Helpers for simulator and simulator-engine tests: an event recorder, engine factory
and pairing flow, all against a REAL simulator over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

from wafleet.engines.base import (
    Connected,
    ConnectionLost,
    EngineContext,
    EngineEvent,
    PairSuccess,
    QrCode,
)
from wafleet.engines.credentials import MemoryCredentialStore
from wafleet.engines.simulator import SimulatorEngine

E = TypeVar("E", bound=EngineEvent)
DEADLINE = 10.0  # "eventually" bound for events over real sockets


class Recorder:
    """An engine event sink that remembers every event and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[EngineEvent] = []
        self._changed = asyncio.Condition()
        self.on_event: Callable[[EngineEvent], object] | None = None

    async def __call__(self, event: EngineEvent) -> None:
        self.events.append(event)
        if self.on_event is not None:
            result = self.on_event(event)
            if asyncio.iscoroutine(result):
                await result
        async with self._changed:
            self._changed.notify_all()

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def lost(self) -> list[ConnectionLost]:
        return self.of(ConnectionLost)

    async def wait_for(
        self, kind: type[E], *, count: int = 1, timeout: float = DEADLINE, exact: bool = False
    ) -> E:
        """The ``count``-th event of ``kind`` (``exact``: type equality, not subclass)."""

        def found() -> list[E]:
            return [e for e in self.events if (type(e) is kind if exact else isinstance(e, kind))]

        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: len(found()) >= count)
        return found()[count - 1]


def make_engine(
    ws_url: str,
    *,
    store: MemoryCredentialStore | None = None,
    slug: str = "t1",
    keepalive_interval: float = 5.0,
    keepalive_timeout: float = 5.0,
    connect_timeout: float | None = 3.0,
) -> tuple[SimulatorEngine, Recorder, MemoryCredentialStore]:
    rec = Recorder()
    store = store or MemoryCredentialStore()
    ctx = EngineContext(
        tenant_slug=slug, session_dir=Path("/nonexistent"), credentials=store, sink=rec
    )
    engine = SimulatorEngine(
        ctx,
        url=ws_url,
        keepalive_interval=keepalive_interval,
        keepalive_timeout=keepalive_timeout,
        connect_timeout=connect_timeout,
    )
    return engine, rec, store


async def pair(
    engine: SimulatorEngine, rec: Recorder, http: httpx.AsyncClient, phone: str
) -> Connected:
    """QR → scan → PairSuccess → restart_required → reconnect → Connected."""
    await engine.connect()
    qr = await rec.wait_for(QrCode)
    resp = await http.post("/sim/scan", json={"qr": qr.code, "phone": phone})
    assert resp.status_code == 200, resp.text
    await rec.wait_for(PairSuccess)
    await rec.wait_for(ConnectionLost)
    await engine.connect()
    return await rec.wait_for(Connected)


class running_simulator:
    """An in-process `SimulatorServer` plus an HTTP client for its control API."""

    def __init__(self, time_scale: float = 0.05) -> None:
        from wafleet.simulator import SimulatorServer

        self.server = SimulatorServer(time_scale=time_scale)
        self.http: httpx.AsyncClient

    async def __aenter__(self) -> running_simulator:
        await self.server.start()
        self.http = httpx.AsyncClient(base_url=self.server.http_url, timeout=10, trust_env=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
        await self.server.stop()

    @property
    def ws_url(self) -> str:
        return self.server.ws_url

    async def stats(self) -> dict[str, object]:
        resp = await self.http.get("/sim/stats")
        assert resp.status_code == 200
        return dict(resp.json())

    async def fault(self, kind: str, phone: str, duration_s: float | None = None) -> dict:
        body: dict[str, object] = {"kind": kind, "phone": phone}
        if duration_s is not None:
            body["duration_s"] = duration_s
        resp = await self.http.post("/sim/faults", json=body)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    async def inbound(self, phone: str, sender: str, text: str) -> str:
        resp = await self.http.post(
            "/sim/inbound", json={"phone": phone, "from": sender, "text": text}
        )
        assert resp.status_code == 200, resp.text
        return str(resp.json()["id"])
