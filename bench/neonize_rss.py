"""Memory per tenant of the neonize engine, offline: one child per tenant vs shards.

    .venv/bin/python bench/neonize_rss.py [--n 1 10 50] [--json out.json]

Every client is created and *dialling*: its WhatsApp connection goes through a SOCKS proxy
on a loopback listener that accepts and never answers (what a black-holed route looks
like), so each client sits in its dial the way it would on a dead network.

* ``per-tenant``: N real engine children (``python -m wafleet.engines.neonize.child``),
  each with one client — the design the engine uses.
* ``shard``: one process with N neonize clients, connects started one at a time (Go-side
  calls serialised, as a shard would have to).

Reported per mode and N: total RSS and PSS of the engine processes (PSS splits pages
shared between processes — the Go library, Python's own — fairly, so it is the number
that adds up across processes), and both per tenant.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from wafleet.engines.neonize.process import ChildHung, ChildProcess

SETTLE_S = 3.0


def mem_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB from /proc/<pid>/smaps_rollup."""
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def blackhole() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


async def per_tenant(n: int, proxy: str, tmp: Path) -> dict[str, Any]:
    children = [ChildProcess(f"bench-{i}") for i in range(n)]
    sem = asyncio.Semaphore(os.cpu_count() or 2)
    started = time.monotonic()

    async def one(i: int, child: ChildProcess) -> None:
        async with sem:
            await child.start()
        args = {"db": str(tmp / f"pt-{i}.db"), "uuid": f"bench-{i}", "proxy": proxy}
        try:
            await child.request("connect", args, timeout=1.0)
        except ChildHung:
            pass  # dialling into the black hole, as intended

    try:
        await asyncio.gather(*(one(i, c) for i, c in enumerate(children)))
        spawn_s = time.monotonic() - started
        await asyncio.sleep(SETTLE_S)
        rss = pss = 0
        for c in children:
            assert c.pid is not None
            r, p = mem_kib(c.pid)
            rss, pss = rss + r, pss + p
    finally:
        await asyncio.gather(*(c.kill() for c in children))
    return _figures("per-tenant", n, rss, pss, spawn_s)


SHARD_SCRIPT = textwrap.dedent(
    """
    import logging, sys, threading, time
    logging.basicConfig(level=logging.ERROR)
    from neonize.client import NewClient
    from neonize._binder import ProxySettings
    n, proxy, tmp = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    clients = []
    for i in range(n):
        c = NewClient(f"{tmp}/shard-{i}.db", uuid=f"shard-{i}")
        t = threading.Thread(target=c.connect, args=(ProxySettings(proxy_address=proxy),),
                             daemon=True)
        t.start()
        clients.append((c, t))
        time.sleep(0.05)  # serialised: one client's Go-side registration at a time
    print("ready", flush=True)
    sys.stdin.readline()
    """
)


def shard(n: int, proxy: str, tmp: Path) -> dict[str, Any]:
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", SHARD_SCRIPT, str(n), proxy, str(tmp)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"shard process failed (exit {proc.poll()})")
        spawn_s = time.monotonic() - started
        time.sleep(SETTLE_S)
        rss, pss = mem_kib(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    return _figures("shard", n, rss, pss, spawn_s)


def _figures(mode: str, n: int, rss: int, pss: int, spawn_s: float) -> dict[str, Any]:
    return {
        "mode": mode,
        "tenants": n,
        "rss_mib": round(rss / 1024, 1),
        "pss_mib": round(pss / 1024, 1),
        "rss_mib_per_tenant": round(rss / 1024 / n, 1),
        "pss_mib_per_tenant": round(pss / 1024 / n, 1),
        "start_s": round(spawn_s, 2),
    }


async def run(ns: list[int]) -> list[dict[str, Any]]:
    hole = blackhole()
    proxy = f"socks5://127.0.0.1:{hole.getsockname()[1]}"
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in ns:
                results.append(await per_tenant(n, proxy, Path(tmp)))
                print(json.dumps(results[-1]), flush=True)
                results.append(await asyncio.to_thread(shard, n, proxy, Path(tmp)))
                print(json.dumps(results[-1]), flush=True)
    finally:
        hole.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = asyncio.run(run(args.n))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
