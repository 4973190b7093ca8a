"""Simulator load benchmark: N linked `SimulatorEngine`s against a real `wafleet simulator`
process, inbound injected through ``POST /sim/inbound/batch``, every message acked (and,
with ``--reply``, answered with ``send_text``), figures printed (and written with --json).

    .venv/bin/python bench/sim_load.py --connections 1000 --messages 50000

The simulator runs in its own process (one core), this script is the client side (the
other core). Figures: connections linked, time to link them, inbound msgs/s delivered and
acked end to end, and with --reply the round-trip rate (inbound + reply recorded).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from wafleet.engines.base import (
    Connected,
    ConnectionLost,
    EngineContext,
    EngineEvent,
    IncomingMessage,
    PairSuccess,
    QrCode,
)
from wafleet.engines.credentials import MemoryCredentialStore
from wafleet.engines.simulator import SimulatorEngine

SCANNERS = 8


class Client:
    """One engine and what it saw; the sink acks (and optionally replies) at once."""

    def __init__(self, index: int, url: str, reply: bool) -> None:
        self.phone = f"+1555{index:07d}"
        self.reply = reply
        self.qr: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.paired = asyncio.Event()
        self.connected = asyncio.Event()
        self.lost = asyncio.Event()
        self.received = 0
        self.lost_unexpectedly = 0
        self.store = MemoryCredentialStore()
        ctx = EngineContext(f"bench{index}", Path("/nonexistent"), self.store, self.sink)
        self.engine = SimulatorEngine(
            ctx, url=url, keepalive_interval=15, keepalive_timeout=10, connect_timeout=60
        )
        self._replies: set[asyncio.Task[None]] = set()

    async def sink(self, event: EngineEvent) -> None:
        if isinstance(event, IncomingMessage):
            self.received += 1
            await self.engine.ack(event.id)
            if self.reply:
                task = asyncio.create_task(
                    self.engine.send_text(event.chat, "re: " + event.text, "r-" + event.id),
                    name=f"bench-reply-{event.id}",
                )
                self._replies.add(task)
                task.add_done_callback(self._replies.discard)
        elif isinstance(event, QrCode):
            if not self.qr.done():
                self.qr.set_result(event.code)
        elif isinstance(event, PairSuccess):
            self.paired.set()
        elif isinstance(event, Connected):
            self.connected.set()
        elif isinstance(event, ConnectionLost):
            if self.connected.is_set():
                self.lost_unexpectedly += 1
            self.lost.set()

    async def link(self, http: httpx.AsyncClient, scanners: asyncio.Semaphore) -> None:
        await self.engine.connect()
        code = await self.qr
        async with scanners:
            resp = await http.post("/sim/scan", json={"qr": code, "phone": self.phone})
        resp.raise_for_status()
        await self.lost.wait()  # restart_required after pairing, like WhatsApp
        self.lost.clear()
        await self.engine.connect()
        await self.connected.wait()


async def wait_stat(http: httpx.AsyncClient, key: str, target: int, timeout: float) -> float:
    deadline = time.perf_counter() + timeout
    while True:
        stats = (await http.get("/sim/stats")).json()
        if stats[key] >= target:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{key} stuck at {stats[key]} < {target}")
        await asyncio.sleep(0.02)


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    import psutil

    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


async def run(args: argparse.Namespace, base: str, sim_pid: int | None) -> dict[str, Any]:
    ws_url = base.replace("http://", "ws://") + "/ws"
    # Few pooled connections and scans never queued in the pool: httpcore's pool
    # bookkeeping is O(connections x queued requests) per request.
    limits = httpx.Limits(max_connections=SCANNERS, max_keepalive_connections=SCANNERS)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits, trust_env=False) as http:
        clients = [Client(i, ws_url, args.reply) for i in range(args.connections)]
        link_cpu0 = cpu_seconds(sim_pid)
        t0 = time.perf_counter()
        sem = asyncio.Semaphore(args.link_concurrency)
        scanners = asyncio.Semaphore(SCANNERS)

        async def link(c: Client) -> None:
            async with sem:
                await c.link(http, scanners)

        await asyncio.gather(*(link(c) for c in clients))
        link_s = time.perf_counter() - t0
        link_cpu = cpu_seconds(sim_pid) - link_cpu0
        stats = (await http.get("/sim/stats")).json()
        open_now = sum(stats["connections"].values())

        # Inbound: batches spread round-robin over the phones, sent by a few concurrent posters.
        phones = [c.phone for c in clients]
        n = args.messages
        batches = [
            [
                {"phone": phones[i % len(phones)], "from": f"+1999{i % 97:04d}", "text": f"m{i}"}
                for i in range(start, min(n, start + args.batch))
            ]
            for start in range(0, n, args.batch)
        ]
        base_delivered = stats["delivered"]
        base_outbound = stats["outbound"]
        queue: asyncio.Queue[list[dict[str, str]]] = asyncio.Queue()
        for b in batches:
            queue.put_nowait(b)

        async def poster() -> None:
            while not queue.empty():
                body = {"messages": queue.get_nowait()}
                (await http.post("/sim/inbound/batch", json=body)).raise_for_status()

        cpu0 = cpu_seconds(sim_pid)
        t1 = time.perf_counter()
        await asyncio.gather(*(poster() for _ in range(args.posters)))
        injected_s = time.perf_counter() - t1
        done_in = await wait_stat(http, "delivered", base_delivered + n, args.timeout)
        inbound_s = done_in - t1
        sim_cpu = cpu_seconds(sim_pid) - cpu0
        result: dict[str, Any] = {
            "connections": open_now,
            "link_s": round(link_s, 2),
            "simulator_link_cpu_s": round(link_cpu, 3) if sim_pid else None,
            "messages": n,
            "inject_s": round(injected_s, 3),
            "inbound_s": round(inbound_s, 3),
            "inbound_msgs_s": round(n / inbound_s),
            "received_by_engines": sum(c.received for c in clients),
            # simulator process CPU while it delivered them (its headroom: 1 core = 1.0)
            "simulator_cpu_s": round(sim_cpu, 3) if sim_pid else None,
            "simulator_core_utilisation": round(sim_cpu / inbound_s, 2) if sim_pid else None,
            "simulator_cpu_us_per_msg": round(sim_cpu / n * 1e6, 1) if sim_pid else None,
            "unexpected_disconnects": sum(c.lost_unexpectedly for c in clients),
        }
        if args.reply:
            replied = await wait_stat(http, "outbound", base_outbound + n, args.timeout)
            result["roundtrip_s"] = round(replied - t1, 3)
            result["roundtrip_msgs_s"] = round(n / (replied - t1))
        final = (await http.get("/sim/stats")).json()
        result["max_concurrent_over_1"] = sum(1 for v in final["max_concurrent"].values() if v > 1)
        await asyncio.gather(*(c.engine.close() for c in clients))
        return result


def start_simulator(port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAFLEET_")}
    return subprocess.Popen(
        [sys.executable, "-m", "wafleet", "simulator", "--port", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=1000, help="messages per /sim/inbound/batch")
    ap.add_argument("--posters", type=int, default=2, help="concurrent batch posters")
    ap.add_argument("--link-concurrency", type=int, default=100)
    ap.add_argument("--reply", action="store_true", help="each engine replies to each message")
    ap.add_argument("--url", help="use a running simulator (http://HOST:PORT) instead")
    ap.add_argument("--pid", type=int, help="with --url: the simulator's pid, for its CPU")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()

    proc = None
    base = args.url
    if base is None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = start_simulator(port, Path("/tmp/sim_load_simulator.log"))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(base + "/sim/stats", timeout=1, trust_env=False)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the simulator did not start") from None
                time.sleep(0.1)
    try:
        result = asyncio.run(run(args, base, proc.pid if proc is not None else args.pid))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(15)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
