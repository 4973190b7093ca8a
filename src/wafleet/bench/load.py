"""Inbound load at the simulator: as fast as it goes (throughput) or at a fixed offered
rate (latency), through ``POST /sim/inbound/batch``; replies counted at ``/sim/stats`` and
matched at ``/sim/outbound`` by their id ``R-<inbound id>``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from wafleet.bench.common import BenchError

Message = dict[str, str]


def messages(phones: list[str], chats: int, start: int, count: int, tag: str) -> list[Message]:
    """``count`` messages spread round-robin over the phones, each phone's over ``chats``
    contacts (so chats are processed in parallel, each one in order)."""
    n = len(phones)
    return [
        {
            "phone": phones[i % n],
            "from": f"+1999{(i // n) % chats:06d}",
            "text": f"{tag} {i}",
        }
        for i in range(start, start + count)
    ]


@dataclass
class Injected:
    ids: list[str]
    started: float  # perf_counter before the first POST
    posted: float  # perf_counter after the last POST returned


async def _post(http: httpx.AsyncClient, url: str, batch: list[Message]) -> list[str]:
    resp = await http.post(f"{url}/sim/inbound/batch", json={"messages": batch})
    if resp.status_code != 200:
        raise BenchError(f"/sim/inbound/batch answered {resp.status_code}: {resp.text[:200]}")
    return [str(i) for i in resp.json()["ids"]]


async def outbound_count(http: httpx.AsyncClient, url: str) -> int:
    resp = await http.get(f"{url}/sim/stats")
    resp.raise_for_status()
    return int(resp.json()["outbound"])


async def flood(
    http: httpx.AsyncClient,
    url: str,
    phones: list[str],
    *,
    chats: int,
    count: int,
    batch: int = 1000,
    posters: int = 2,
    tag: str = "t",
) -> Injected:
    """Inject ``count`` messages as fast as the simulator takes them."""
    batches = [
        messages(phones, chats, s, min(batch, count - s), tag) for s in range(0, count, batch)
    ]
    queue: asyncio.Queue[list[Message]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)
    ids: list[str] = []

    async def poster() -> None:
        while not queue.empty():
            ids.extend(await _post(http, url, queue.get_nowait()))

    started = time.perf_counter()
    await asyncio.gather(*(poster() for _ in range(posters)))
    return Injected(ids, started, time.perf_counter())


async def paced(
    http: httpx.AsyncClient,
    url: str,
    phones: list[str],
    *,
    chats: int,
    rate: float,
    duration: float,
    tick: float = 0.01,
    tag: str = "p",
) -> Injected:
    """Inject at ``rate`` messages/s for ``duration`` s (a batch every ``tick`` with what is
    due by then, so a slow POST is caught up instead of lowering the offered load)."""
    total = int(rate * duration)
    sent = 0
    ids: list[str] = []
    started = time.perf_counter()
    while sent < total:
        elapsed = time.perf_counter() - started
        due = min(total, int(rate * elapsed) + 1) - sent
        if due > 0:
            ids.extend(await _post(http, url, messages(phones, chats, sent, due, tag)))
            sent += due
        await asyncio.sleep(max(0.0, started + (sent / rate) - time.perf_counter(), tick / 10))
    return Injected(ids, started, time.perf_counter())


async def wait_outbound(
    http: httpx.AsyncClient,
    url: str,
    target: int,
    *,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
) -> float:
    """perf_counter when the simulator has recorded ``target`` outbound messages in all."""
    deadline = time.perf_counter() + timeout
    while True:
        seen = await outbound_count(http, url)
        now = time.perf_counter()
        if seen >= target:
            return now
        if now > deadline:
            raise BenchError(f"only {seen} of {target} replies after {timeout:g}s")
        if not alive():
            raise BenchError(f"the responder died after {seen} of {target} replies")
        await asyncio.sleep(0.02)


async def replies(http: httpx.AsyncClient, url: str) -> dict[str, dict[str, Any]]:
    """Every recorded outbound message by id."""
    resp = await http.get(f"{url}/sim/outbound", timeout=60)
    resp.raise_for_status()
    return {str(m["id"]): m for m in resp.json()}


def latencies_ms(
    ids: list[str], out: dict[str, dict[str, Any]], injected_at: Callable[[str], datetime | None]
) -> list[float]:
    """Reply recorded-at minus inbound injected-at, both simulator timestamps, per message."""
    result: list[float] = []
    for mid in ids:
        reply = out.get(f"R-{mid}")
        start = injected_at(mid)
        if reply is None or start is None:
            raise BenchError(f"message {mid} has no reply or no injection time")
        end = datetime.fromisoformat(str(reply["at"]))
        result.append((end - start).total_seconds() * 1000)
    return result
