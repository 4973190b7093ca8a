from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from wafleet.simulator import SimulatorServer


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    """An in-process simulator on a free port; QR lifetimes scaled down 20x."""
    server = SimulatorServer(time_scale=0.05)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def http(sim: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.http_url, timeout=10, trust_env=False) as client:
        yield client
