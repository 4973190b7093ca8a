"""``neonize``: memory per tenant of the real engine, offline, N = 1, 10, 50 (``sizes``).

Every client is created and *dialling*: its WhatsApp connection goes through a SOCKS proxy
on a loopback listener that accepts and never answers (a black-holed route), so nothing
leaves the machine. Two layouts:

* ``child per tenant`` — N real engine children (``wafleet.engines.neonize.child``), one
  client each: the design the engine uses (see docs/NEONIZE.md for why);
* ``shard`` — one process holding N clients, for comparison.

RSS and PSS from ``/proc/<pid>/smaps_rollup``; PSS splits pages shared between processes
fairly, so it is the figure that adds up across children. Baseline: WAHA's published
per-session figures (not measured here).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from wafleet.bench.common import BenchError, Figures, Result, Row, fmt

SETTLE_S = 3.0
WAHA_WS_MB = (60, 80)
WAHA_BROWSER_MB = (250, 400)


@dataclass
class NeonizeOptions:
    sizes: tuple[int, ...] = field(default=(1, 10, 50))
    shard: bool = True


def mem_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB."""
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


async def per_tenant(n: int, proxy: str, tmp: Path) -> tuple[int, int, float]:
    from wafleet.engines.neonize.process import ChildHung, ChildProcess

    children = [ChildProcess(f"bench-{i}", log_level="ERROR") for i in range(n)]
    sem = asyncio.Semaphore(os.cpu_count() or 2)
    started = time.monotonic()

    async def one(i: int, child: ChildProcess) -> None:
        async with sem:
            await child.start()
        args = {"db": str(tmp / f"pt-{n}-{i}.db"), "uuid": f"bench-{i}", "proxy": proxy}
        with contextlib.suppress(ChildHung):  # dialling into the black hole, as intended
            await child.request("connect", args, timeout=1.0)

    try:
        await asyncio.gather(*(one(i, c) for i, c in enumerate(children)))
        spawn_s = time.monotonic() - started
        await asyncio.sleep(SETTLE_S)
        rss = pss = 0
        for c in children:
            if c.pid is None:
                raise BenchError("an engine child died while dialling")
            r, p = mem_kib(c.pid)
            rss, pss = rss + r, pss + p
    finally:
        await asyncio.gather(*(c.kill() for c in children), return_exceptions=True)
    return rss, pss, spawn_s


SHARD_SCRIPT = textwrap.dedent(
    """
    import logging, sys, threading, time
    logging.basicConfig(level=logging.ERROR)
    from neonize.client import NewClient
    from neonize._binder import ProxySettings
    n, proxy, tmp = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    clients = []
    for i in range(n):
        c = NewClient(f"{tmp}/shard-{n}-{i}.db", uuid=f"shard-{i}")
        t = threading.Thread(target=c.connect, args=(ProxySettings(proxy_address=proxy),),
                             daemon=True)
        t.start()
        clients.append((c, t))
        time.sleep(0.05)  # serialised: one client's Go-side registration at a time
    print("ready", flush=True)
    sys.stdin.readline()
    """
)


def shard(n: int, proxy: str, tmp: Path) -> tuple[int, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SHARD_SCRIPT, str(n), proxy, str(tmp)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise BenchError(f"the shard process failed (exit {proc.poll()})")
        time.sleep(SETTLE_S)
        return mem_kib(proc.pid)
    finally:
        proc.kill()
        proc.wait()


async def run_async(opts: NeonizeOptions, root: Path) -> Result:
    await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
    hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hole.bind(("127.0.0.1", 0))
    hole.listen(1024)
    proxy = f"socks5://127.0.0.1:{hole.getsockname()[1]}"
    figures: Figures = {}
    rows: list[Row] = []
    try:
        for n in opts.sizes:
            rss, pss, spawn_s = await per_tenant(n, proxy, root)
            fig: dict[str, float] = {
                "rss_mb": round(rss / 1024, 1),
                "pss_mb": round(pss / 1024, 1),
                "rss_mb_per_tenant": round(rss / 1024 / n, 1),
                "pss_mb_per_tenant": round(pss / 1024 / n, 1),
                "start_s": round(spawn_s, 2),
            }
            if opts.shard:
                srss, spss = await asyncio.to_thread(shard, n, proxy, root)
                fig["shard_pss_mb_per_tenant"] = round(spss / 1024 / n, 1)
                fig["shard_rss_mb"] = round(srss / 1024, 1)
            figures[f"n{n}"] = fig
            shard_txt = (
                f"; shard {fig['shard_pss_mb_per_tenant']:g}"
                if "shard_pss_mb_per_tenant" in fig
                else ""
            )
            rows.append(
                Row(
                    f"N={n}: PSS per tenant, child per tenant (MB)",
                    fmt(pss / 1024 / n) + shard_txt,
                    "",
                    f"{WAHA_WS_MB[0]}-{WAHA_WS_MB[1]} WS / {WAHA_BROWSER_MB[0]}-"
                    f"{WAHA_BROWSER_MB[1]} browser (WAHA)",
                )
            )
    finally:
        hole.close()
    figures["baseline_waha_mb_per_session"] = list(WAHA_WS_MB)
    figures["baseline_is_published_not_measured"] = True
    notes = [
        "offline: every client dialling a black-holed loopback proxy; PSS adds up across "
        "processes (RSS double-counts the shared Go library); WAHA figures are published"
    ]
    return Result("neonize", figures, rows, notes)
