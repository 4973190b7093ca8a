"""``failover``: PostgreSQL, two workers sharing ``tenants`` tenants, one killed with
SIGKILL: time until every tenant is connected again (at the simulator) and CONNECTED
under the surviving worker's lease (in the database). Target: within WAFLEET_LEASE_TTL
+ 10 s. The dead worker's leases are not released by anyone: they expire (the
control plane's stale-worker job is not running here), so the figure is bounded below by
the lease TTL. The simulator runs with ``--idle-timeout`` as a guard, though kill -9
closes the dead worker's sockets anyway. Credentials live in the database
(`DbCredentialStore`), so the tenants move without a new QR scan.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from wafleet.bench.common import Figures, Result, Row, fmt
from wafleet.bench.fleet import Fleet
from wafleet.bench.pg import PgCluster
from wafleet.bench.procs import wait_for


@dataclass
class FailoverOptions:
    tenants: int = 200
    lease_ttl: float = 10.0
    heartbeat_interval: float = 2.0
    keepalive_interval: float = 3.0
    timeout: float = 90.0


async def run_async(opts: FailoverOptions, root: Path) -> Result:
    cluster = await asyncio.to_thread(PgCluster)
    url = await asyncio.to_thread(cluster.start)
    try:
        return await _run(opts, root, url)
    finally:
        await asyncio.to_thread(cluster.stop)


async def _run(opts: FailoverOptions, root: Path, url: str) -> Result:
    env = {
        "WAFLEET_LEASE_TTL": str(opts.lease_ttl),
        "WAFLEET_HEARTBEAT_INTERVAL": str(opts.heartbeat_interval),
        "WAFLEET_STALE_AFTER": str(opts.lease_ttl * 1.5),
        "WAFLEET_KEEPALIVE_INTERVAL": str(opts.keepalive_interval),
        "WAFLEET_KEEPALIVE_TIMEOUT": str(opts.keepalive_interval),
        "WAFLEET_LOG_LEVEL": "WARNING",
    }
    idle_timeout = opts.keepalive_interval * 2 + 1
    async with Fleet(root, db_url=url, worker_env=env) as fleet, fleet.http() as http:
        await fleet.migrate()
        await fleet.start_simulator("--idle-timeout", str(idle_timeout))
        await fleet.seed(opts.tenants, paused=True)
        a, b = fleet.start_worker(), fleet.start_worker()

        async def both_registered() -> dict[int, str] | None:
            rows = await fleet.query("SELECT id, pid FROM worker_processes")
            ids = {int(r["pid"]): str(r["id"]) for r in rows}
            return ids if a.pid in ids and b.pid in ids else None

        ids = await wait_for(both_registered, timeout=60, what="two workers", procs=fleet.procs)
        await fleet.set_status("ACTIVE")  # both claim their fair share now
        await fleet.wait_connected(http, fleet.phones, timeout=opts.timeout)

        async def spread() -> dict[str, int] | None:
            rows = await fleet.query(
                "SELECT worker_id, count(*) AS n FROM tenant_leases GROUP BY worker_id"
            )
            held = {str(r["worker_id"]): int(r["n"]) for r in rows if r["worker_id"]}
            return held if len(held) == 2 and sum(held.values()) == opts.tenants else None

        held = await wait_for(spread, timeout=opts.timeout, what="leases on both workers")
        victim = a if held.get(ids[a.pid], 0) >= held.get(ids[b.pid], 0) else b
        survivor = b if victim is a else a
        moved = held[ids[victim.pid]]
        await fleet.wait_connected(http, fleet.phones, timeout=opts.timeout)
        await asyncio.sleep(opts.heartbeat_interval)  # steady state before the kill
        victim.kill9()
        t0 = time.perf_counter()

        async def sim_back() -> bool:
            return await fleet.connected_count(http, fleet.phones) == opts.tenants

        await asyncio.sleep(0.2)  # the dead worker's sockets are gone by then
        await wait_for(sim_back, timeout=opts.timeout, what="all tenants connected again")
        sim_s = time.perf_counter() - t0

        async def db_back() -> bool:
            rows = await fleet.query(
                "SELECT count(*) AS n FROM whatsapp_sessions s JOIN tenant_leases l "
                "ON l.tenant_id = s.tenant_id WHERE s.state = 'CONNECTED' AND l.worker_id = :w",
                w=ids[survivor.pid],
            )
            return int(rows[0]["n"]) == opts.tenants

        await wait_for(db_back, timeout=opts.timeout, what="all CONNECTED under the survivor")
        db_s = time.perf_counter() - t0
        stats = await fleet.sim_stats(http)
        twice = sum(1 for v in stats["max_concurrent"].values() if v > 1)
    target = opts.lease_ttl + 10
    figures: Figures = {
        "tenants": opts.tenants,
        "moved_tenants": moved,
        "failover_s": round(sim_s, 2),
        "failover_db_s": round(db_s, 2),
        "lease_ttl_s": opts.lease_ttl,
        "heartbeat_interval_s": opts.heartbeat_interval,
        "target_s": target,
        "sessions_ever_run_twice": twice,
    }
    rows = [
        Row(
            f"{moved} tenants connected again after kill -9 (s)",
            fmt(sim_s, 2),
            f"<= {target:g} (TTL + 10)",
            "manual re-sharding (WAHA)",
            sim_s <= target,
        ),
        Row(
            "all CONNECTED under the survivor (s)",
            fmt(db_s, 2),
            f"<= {target:g}",
            "",
            db_s <= target,
        ),
        Row("sessions ever run twice", str(twice), "0", "", twice == 0),
    ]
    notes = [
        f"lease TTL {opts.lease_ttl:g}s, heartbeat {opts.heartbeat_interval:g}s; the dead "
        "worker's leases expire (no stale-worker job in this run)",
    ]
    return Result("failover", figures, rows, notes)
