"""Control-plane status route benchmark: a real `wafleet control-plane` process on
loopback over a SQLite database with N tenants (default 1,000; one member each, messages
and timeline events), driven by an httpx client with a fixed concurrency for a bounded
number of requests, each as a random tenant's member.

    .venv/bin/python bench/api_status.py --tenants 1000 --requests 3000 --concurrency 16

Figures: requests/s, p50/p90/p99/max latency (ms), errors. The server runs in its own
process (one core), this script is the client (the other core).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support.procs: the process helpers

from tests.support.procs import base_env, free_port, running, wait_http_ok  # noqa: E402

KEY = "b" * 40
PATH = "/portal/tenant/current/status"


async def seed(db_url: str, tenants: int, messages_per_tenant: int) -> None:
    from wafleet.db.engine import Database
    from wafleet.db.models import (
        ConnectionEvent,
        MessageLog,
        Tenant,
        TenantLease,
        TenantMember,
        User,
        WhatsAppSession,
        WorkerProcess,
    )
    from wafleet.security import hash_password

    now = datetime.now(UTC)
    pw = hash_password("benchmark-password")
    states = ["CONNECTED", "CONNECTED", "CONNECTED", "DISCONNECTED", "QR_READY"]
    async with Database(db_url) as db, db.session() as s, s.begin():
        s.add(
            WorkerProcess(
                id="bench-worker", host="bench", pid=1, status="RUNNING",
                started_at=now, last_heartbeat_at=now, stats={},
            )
        )  # fmt: skip
        for i in range(tenants):
            tid = i + 1
            s.add(User(id=tid, email=f"u{i}@bench.test", password_hash=pw))
            s.add(Tenant(id=tid, slug=f"t{i:05d}", name=f"Tenant {i}", status="ACTIVE", config={}))
        await s.flush()
        for i in range(tenants):
            tid = i + 1
            state = states[i % len(states)]
            s.add(TenantMember(tenant_id=tid, user_id=tid, role="owner"))
            s.add(
                WhatsAppSession(
                    tenant_id=tid, state=state, phone=f"+1555{i:06d}",
                    worker_id="bench-worker", last_seen_at=now,
                    last_disconnect_cause="network" if i % 7 == 0 else None,
                    last_disconnect_action="retrying" if i % 7 == 0 else None,
                    last_disconnect_at=now if i % 7 == 0 else None,
                )
            )  # fmt: skip
            s.add(TenantLease(tenant_id=tid, worker_id="bench-worker", epoch=1))
            for j in range(messages_per_tenant):
                s.add(
                    MessageLog(
                        tenant_id=tid, direction="in" if j % 2 else "out",
                        wa_id=f"b{tid}-{j}", chat="+15550000", sender="+15550000",
                        body="hello", status="PROCESSED" if j % 2 else "SENT",
                        created_at=now - timedelta(minutes=j * 30),
                        updated_at=now,
                    )
                )  # fmt: skip
            for _ in range(5):
                s.add(ConnectionEvent(tenant_id=tid, at=now, kind="transition", to_state=state))


async def drive(
    url: str, tenants: int, requests: int, concurrency: int, path: str = PATH
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    rng = random.Random(42)
    todo = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def one_client() -> None:
            nonlocal errors
            for _ in todo:
                email = f"u{rng.randrange(tenants)}@bench.test"
                t0 = time.perf_counter()
                resp = await client.get(PATH, headers={"x-portal-key": KEY, "x-user-email": email})
                latencies.append(time.perf_counter() - t0)
                if resp.status_code != 200:
                    errors += 1

        # warm-up (connections, caches), not measured
        for _ in range(20):
            await client.get(path, headers={"x-portal-key": KEY, "x-user-email": "u0@bench.test"})
        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start

    ms = sorted(x * 1000 for x in latencies)

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, int(p / 100 * len(ms)))], 2)

    return {
        "tenants": tenants,
        "requests": len(ms),
        "concurrency": concurrency,
        "errors": errors,
        "requests_per_s": round(len(ms) / elapsed, 1),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": round(ms[-1], 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def run(
    tenants: int = 1000, requests: int = 3000, concurrency: int = 16, messages: int = 20
) -> dict[str, Any]:
    from wafleet.db import migrate

    with tempfile.TemporaryDirectory(prefix="wafleet-bench-api-") as tmp:
        data = Path(tmp) / "data"
        db_url = f"sqlite:///{data / 'wafleet.db'}"
        migrate.upgrade(db_url)
        t0 = time.perf_counter()
        asyncio.run(seed(db_url, tenants, messages))
        seeded = time.perf_counter() - t0
        port = free_port()
        env = base_env(data, WAFLEET_PORTAL_KEY=KEY, WAFLEET_LOG_LEVEL="WARNING")
        with running(
            ["control-plane", "--port", str(port), "--no-migrate"], env, Path(tmp) / "cp.log"
        ):
            url = f"http://127.0.0.1:{port}"
            wait_http_ok(f"{url}/healthz", timeout=60)
            figures = asyncio.run(drive(url, tenants, requests, concurrency))
            # the same load on /healthz (one trivial query, no auth): the framework's floor
            base = asyncio.run(drive(url, tenants, requests, concurrency, "/healthz"))
    figures["healthz_requests_per_s"] = base["requests_per_s"]
    figures["healthz_p99_ms"] = base["p99_ms"]
    figures["messages_per_tenant"] = messages
    figures["seed_s"] = round(seeded, 1)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--messages", type=int, default=20, help="message rows per tenant")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    figures = run(args.tenants, args.requests, args.concurrency, args.messages)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
