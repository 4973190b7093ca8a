"""``idle``: what an idle connected tenant costs the worker — RSS per tenant and the CPU
of heartbeats and keepalives — beside WAHA's published per-session figures.

One worker starts with ``tenants`` seeded tenants all PAUSED (so its own baseline RSS is
measured with everything imported and nothing connected), then they are resumed and the
worker logs every one in at the simulator. RSS per tenant = (worker RSS after - before)
/ N (psutil); CPU = worker CPU time over a ``window`` of idleness / window (100 % = one
core), with the contract's default keepalive (15 s) and heartbeat (10 s) intervals.
The WAHA figures are published, not measured here.
"""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass
from pathlib import Path

from wafleet.bench.common import MB, Figures, Result, Row, fmt
from wafleet.bench.fleet import Fleet
from wafleet.bench.procs import wait_for

TARGET_MB_PER_TENANT = 1.0
TARGET_CPU_PERCENT = 5.0
# WAHA's published figures (https://waha.devlike.pro): per session, not measured here.
WAHA_WS_MB = (60, 80)  # WebSocket engines (NOWEB/GOWS)
WAHA_WS_CPU_PERCENT = 0.5
WAHA_BROWSER_MB = (250, 400)  # the browser engine (WEBJS)


@dataclass
class IdleOptions:
    tenants: int = 1000
    window: float = 30.0  # seconds of idleness measured (>= 2 keepalive periods)
    settle: float = 5.0
    keepalive_interval: float = 15.0
    heartbeat_interval: float = 10.0
    timeout: float = 120.0


async def run_async(opts: IdleOptions, root: Path) -> Result:
    env = {
        "WAFLEET_KEEPALIVE_INTERVAL": str(opts.keepalive_interval),
        "WAFLEET_HEARTBEAT_INTERVAL": str(opts.heartbeat_interval),
        "WAFLEET_LOG_LEVEL": "WARNING",
    }
    async with Fleet(root, worker_env=env) as fleet, fleet.http() as http:
        await fleet.start_simulator()
        await fleet.migrate()
        await fleet.seed(opts.tenants, paused=True)
        worker = fleet.start_worker()

        async def registered() -> bool:
            rows = await fleet.query("SELECT count(*) AS n FROM worker_processes")
            return int(rows[0]["n"]) > 0

        await wait_for(registered, timeout=60, what="the worker to register", procs=fleet.procs)
        await asyncio.sleep(opts.settle)
        rss0 = worker.rss()
        await fleet.set_status("ACTIVE")
        t0 = asyncio.get_running_loop().time()
        await fleet.wait_connected(http, fleet.phones, timeout=opts.timeout)
        connect_s = asyncio.get_running_loop().time() - t0
        gc.collect()
        await asyncio.sleep(opts.settle)
        rss1 = worker.rss()
        cpu0 = worker.cpu_seconds()
        await asyncio.sleep(opts.window)
        cpu = worker.cpu_seconds() - cpu0
        still = await fleet.connected_count(http, fleet.phones)
    per_tenant_mb = (rss1 - rss0) / MB / opts.tenants
    cpu_percent = cpu / opts.window * 100
    figures: Figures = {
        "tenants": opts.tenants,
        "connected_after_window": still,
        "rss_before_mb": round(rss0 / MB, 1),
        "rss_after_mb": round(rss1 / MB, 1),
        "rss_per_tenant_mb": round(per_tenant_mb, 4),
        "cpu_percent_of_one_core": round(cpu_percent, 2),
        "cpu_percent_per_tenant": round(cpu_percent / opts.tenants, 5),
        "window_s": opts.window,
        "keepalive_interval_s": opts.keepalive_interval,
        "heartbeat_interval_s": opts.heartbeat_interval,
        "connect_all_s": round(connect_s, 2),
        "baseline_waha_mb_per_session": list(WAHA_WS_MB),
        "baseline_waha_browser_mb_per_session": list(WAHA_BROWSER_MB),
        "baseline_waha_cpu_percent_per_session": WAHA_WS_CPU_PERCENT,
        "baseline_is_published_not_measured": True,
    }
    n = opts.tenants
    rows = [
        Row(
            "RSS per connected tenant (MB)",
            fmt(per_tenant_mb, 3),
            f"< {TARGET_MB_PER_TENANT:g}",
            f"{WAHA_WS_MB[0]}-{WAHA_WS_MB[1]} (WAHA WS, published)",
            per_tenant_mb < TARGET_MB_PER_TENANT,
        ),
        Row(
            f"idle CPU, {n} tenants (% of one core)",
            fmt(cpu_percent, 2),
            f"< {TARGET_CPU_PERCENT:g}",
            f"{WAHA_WS_CPU_PERCENT * n:,.0f} (0.5 %/session, published)",
            cpu_percent < TARGET_CPU_PERCENT,
        ),
        Row(
            f"worker RSS with {n} tenants (MB)", fmt(rss1 / MB), "", f"{WAHA_WS_MB[0] * n:,} (WAHA)"
        ),
    ]
    notes = [
        f"{still}/{n} still connected after the window; connecting all took {connect_s:.1f}s; "
        "WAHA figures are published ones, not measured in this run",
    ]
    return Result("idle", figures, rows, notes)
