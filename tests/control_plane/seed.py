"""A small fleet for control-plane tests: two tenants with distinct data, and one user
of each kind the auth rules distinguish."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from wafleet.db.engine import Database
from wafleet.db.models import (
    ConnectionEvent,
    MessageLog,
    TenantLease,
    User,
    WhatsAppSession,
    WorkerProcess,
)
from wafleet.db.repositories import TenantRepository
from wafleet.security import hash_password

KEY = "k" * 40
PASSWORD = "password123"
ALICE = "alice@a.test"  # member of tenant a
BOB = "bob@b.test"  # member of tenant b
MULTI = "multi@x.test"  # member of a and b
ADMIN = "admin@x.test"  # admin, member of nothing
LONER = "loner@x.test"  # exists, member of nothing
UNKNOWN = "ghost@x.test"  # does not exist
SECRET_A = "SECRET-A"  # appears in tenant a's data only
SECRET_B = "SECRET-B"


@dataclass
class Fleet:
    a_id: int
    b_id: int
    now: datetime


@lru_cache(maxsize=1)
def _password_hash() -> str:
    return hash_password(PASSWORD)  # argon2 is slow on purpose: hash once per run


async def seed_fleet(db: Database, now: datetime) -> Fleet:
    async with db.session() as s, s.begin():
        made = {
            email: User(email=email, password_hash=_password_hash(), is_admin=email == ADMIN)
            for email in (ALICE, BOB, MULTI, ADMIN, LONER)
        }
        s.add_all(made.values())
        await s.flush()
        alice, bob, multi = made[ALICE], made[BOB], made[MULTI]
        tenants = TenantRepository(s)
        a = await tenants.create("a", "Tenant A", alice)
        b = await tenants.create("b", "Tenant B", bob)
        await tenants.add_member(a, multi)
        await tenants.add_member(b, multi)
        for tenant, secret in ((a, SECRET_A), (b, SECRET_B)):
            for i in range(3):
                s.add(
                    MessageLog(
                        tenant_id=tenant.id,
                        direction="in",
                        wa_id=f"in-{secret}-{i}",
                        chat=f"+1555{tenant.id}000",
                        sender=f"+1555{tenant.id}000",
                        body=f"{secret} inbound {i}",
                        status="PROCESSED",
                        created_at=now - timedelta(minutes=10 - i),
                        updated_at=now,
                    )
                )
            s.add(
                ConnectionEvent(
                    tenant_id=tenant.id,
                    at=now - timedelta(minutes=5),
                    kind="transition",
                    from_state="CONNECTING",
                    to_state="CONNECTED",
                    detail=f"{secret} connected",
                )
            )
        await tenants.set_config(
            a,
            {
                "rules": [{"match": "any", "pattern": None, "reply": f"{SECRET_A} reply"}],
                "webhook": {"url": "https://example.org/hook", "secret": f"{SECRET_A}-hook"},
            },
        )
    return Fleet(a_id=a.id, b_id=b.id, now=now)


async def add_worker(
    db: Database,
    worker_id: str,
    *,
    heartbeat: datetime,
    tenant_ids: list[int],
    status: str = "RUNNING",
    session_state: str = "CONNECTED",
) -> None:
    async with db.session() as s, s.begin():
        s.add(
            WorkerProcess(
                id=worker_id,
                host="host-1",
                pid=4242,
                status=status,
                started_at=heartbeat - timedelta(minutes=1),
                last_heartbeat_at=heartbeat,
                stats={"tenants": len(tenant_ids), "queue_depth": 2, "outbox_backlog": 1},
            )
        )
        for tid in tenant_ids:
            lease = await s.get(TenantLease, tid)
            assert lease is not None
            lease.worker_id = worker_id
            lease.epoch = 3
            lease.expires_at = heartbeat + timedelta(seconds=20)
            ws = await s.get(WhatsAppSession, tid)
            assert ws is not None
            ws.worker_id = worker_id
            ws.state = session_state
            ws.phone = f"+1555000{tid}"
            ws.connected_since = heartbeat - timedelta(seconds=30)
            ws.last_seen_at = heartbeat


def seeded_sqlite(data: Path) -> str:
    """A migrated SQLite database under ``data`` holding the fleet above; its URL."""
    from wafleet.db import migrate

    url = f"sqlite:///{data / 'wafleet.db'}"
    migrate.upgrade(url)

    async def seed() -> None:
        async with Database(url) as db:
            await seed_fleet(db, datetime.now(UTC))

    asyncio.run(seed())
    return url
