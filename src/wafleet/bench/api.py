"""``api``: the control plane's status route against its ``/healthz`` with ``tenants``
tenants stored — requests/s and p99 of each, same client, same concurrency.

A real ``wafleet control-plane`` process over SQLite with N tenants, each with one member,
a session, a lease, ``messages`` message rows and 5 timeline events. Every status request
is made as a random tenant's member. The server gets one core, this client the other.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
from sqlalchemy import Table

from wafleet.bench.common import Figures, Result, Row, fmt, percentile
from wafleet.bench.procs import Proc, Procs, clean_env, free_port, wait_http

STATUS = "/portal/tenant/current/status"
TARGET_RATIO = 0.5


@dataclass
class ApiOptions:
    tenants: int = 1000
    requests: int = 3000
    concurrency: int = 16
    messages: int = 20


async def seed(db_url: str, tenants: int, messages: int) -> None:
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

    def t(model: Any) -> Table:
        return cast(Table, model.__table__)

    now = datetime.now(UTC)
    pw = hash_password("benchmark-password")
    states = ["CONNECTED", "CONNECTED", "CONNECTED", "DISCONNECTED", "QR_READY"]
    ids = range(1, tenants + 1)
    db = Database(db_url)
    try:
        async with db.engine.begin() as c:
            await c.execute(
                t(WorkerProcess).insert(),
                [{"id": "bench-worker", "host": "bench", "pid": 1, "status": "RUNNING",
                  "started_at": now, "last_heartbeat_at": now, "capacity": 5000, "stats": {}}],
            )  # fmt: skip
            await c.execute(
                t(User).insert(),
                [{"id": i, "email": f"u{i}@bench.test", "password_hash": pw, "is_admin": False,
                  "created_at": now} for i in ids],
            )  # fmt: skip
            await c.execute(
                t(Tenant).insert(),
                [{"id": i, "slug": f"t{i:05d}", "name": f"Tenant {i}", "status": "ACTIVE",
                  "config": {}, "config_version": 0, "created_at": now, "updated_at": now}
                 for i in ids],
            )  # fmt: skip
            await c.execute(
                t(TenantMember).insert(),
                [{"tenant_id": i, "user_id": i, "role": "owner", "created_at": now} for i in ids],
            )
            await c.execute(
                t(WhatsAppSession).insert(),
                [{"tenant_id": i, "state": states[i % len(states)], "phone": f"+1555{i:07d}",
                  "worker_id": "bench-worker", "last_seen_at": now, "reconnect_active": False,
                  "reconnect_attempt": 0, "updated_at": now,
                  "last_disconnect_cause": "network" if i % 7 == 0 else None,
                  "last_disconnect_action": "retrying" if i % 7 == 0 else None,
                  "last_disconnect_at": now if i % 7 == 0 else None} for i in ids],
            )  # fmt: skip
            await c.execute(
                t(TenantLease).insert(),
                [{"tenant_id": i, "worker_id": "bench-worker", "epoch": 1,
                  "expires_at": now + timedelta(hours=1), "acquired_at": now} for i in ids],
            )  # fmt: skip
            await c.execute(
                t(MessageLog).insert(),
                [{"tenant_id": i, "direction": "in" if j % 2 else "out", "wa_id": f"b{i}-{j}",
                  "chat": "+15550000", "sender": "+15550000", "body": "hello",
                  "status": "PROCESSED" if j % 2 else "SENT", "attempts": 0,
                  "created_at": now - timedelta(minutes=j * 30), "updated_at": now}
                 for i in ids for j in range(messages)],
            )  # fmt: skip
            await c.execute(
                t(ConnectionEvent).insert(),
                [{"tenant_id": i, "at": now, "kind": "transition",
                  "to_state": states[i % len(states)]} for i in ids for _ in range(5)],
            )  # fmt: skip
    finally:
        await db.close()


@dataclass
class Load:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int


async def drive(
    url: str, path: str, key: str, tenants: int, requests: int, concurrency: int
) -> Load:
    latencies: list[float] = []
    errors = 0
    rng = random.Random(42)
    todo = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    def headers() -> dict[str, str]:
        return {"x-portal-key": key, "x-user-email": f"u{rng.randrange(1, tenants + 1)}@bench.test"}

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30, trust_env=False) as c:

        async def one_client() -> None:
            nonlocal errors
            for _ in todo:
                h = headers()
                t0 = time.perf_counter()
                resp = await c.get(path, headers=h)
                latencies.append((time.perf_counter() - t0) * 1000)
                if resp.status_code != 200:
                    errors += 1

        for _ in range(20):  # warm-up: connections, caches (not measured)
            await c.get(path, headers=headers())
        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return Load(
        rate=len(latencies) / elapsed,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        errors=errors,
    )


async def run_async(opts: ApiOptions, root: Path) -> Result:
    from wafleet.db import migrate

    data = root / "data"
    db_url = f"sqlite:///{data / 'wafleet.db'}"
    await asyncio.to_thread(migrate.upgrade, db_url)
    await seed(db_url, opts.tenants, opts.messages)
    procs = Procs()
    port = free_port()
    env = clean_env(data, WAFLEET_DATABASE_URL=db_url, WAFLEET_LOG_LEVEL="WARNING")
    key = env["WAFLEET_PORTAL_KEY"]
    try:
        args = ["control-plane", "--port", str(port), "--no-migrate"]
        procs.add(Proc.wafleet(args, env, root / "control-plane.log"))
        url = f"http://127.0.0.1:{port}"
        await wait_http(f"{url}/healthz", timeout=60, procs=procs)
        health = await drive(url, "/healthz", key, opts.tenants, opts.requests, opts.concurrency)
        status = await drive(url, STATUS, key, opts.tenants, opts.requests, opts.concurrency)
    finally:
        await asyncio.to_thread(procs.stop_all)
    ratio = status.rate / health.rate if health.rate else 0.0
    figures: Figures = {
        "tenants": opts.tenants,
        "requests": opts.requests,
        "concurrency": opts.concurrency,
        "status_requests_s": round(status.rate, 1),
        "status_p50_ms": round(status.p50_ms, 2),
        "status_p99_ms": round(status.p99_ms, 2),
        "healthz_requests_s": round(health.rate, 1),
        "healthz_p50_ms": round(health.p50_ms, 2),
        "healthz_p99_ms": round(health.p99_ms, 2),
        "ratio": round(ratio, 3),
        "errors": status.errors + health.errors,
    }
    rows = [
        Row(
            "status route (requests/s)",
            fmt(status.rate),
            f">= {TARGET_RATIO} x /healthz",
            fmt(health.rate) + " (/healthz)",
            ratio >= TARGET_RATIO,
        ),
        Row(
            "status / healthz", f"{ratio:.2f}", f">= {TARGET_RATIO}", "1.00", ratio >= TARGET_RATIO
        ),
        Row("status p99 (ms)", fmt(status.p99_ms, 2), "", fmt(health.p99_ms, 2) + " (/healthz)"),
        Row(
            "errors",
            str(status.errors + health.errors),
            "0",
            "",
            status.errors + health.errors == 0,
        ),
    ]
    notes = [
        f"{opts.tenants} tenants, {opts.messages} messages each, concurrency {opts.concurrency}"
    ]
    return Result("api", figures, rows, notes)
