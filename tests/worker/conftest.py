from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.worker.fakes import FakeWorld
from wafleet.config import Settings, load_settings
from wafleet.db.engine import Database
from wafleet.db.migrate import upgrade
from wafleet.db.models import TenantLease, WorkerProcess
from wafleet.db.repositories import TenantRepository, UserRepository
from wafleet.engines.credentials import MemoryCredentialStore
from wafleet.worker.batcher import WriteBatcher
from wafleet.worker.bot import BotDeps, TenantBot
from wafleet.worker.clock import ManualClock
from wafleet.worker.webhook import WebhookClient

WORKER = "test-worker"


@dataclass
class BotHarness:
    settings: Settings
    db: Database
    clock: ManualClock
    world: FakeWorld
    deps: BotDeps
    tenant_id: int
    creds: MemoryCredentialStore

    def bot(self, epoch: int = 1) -> TenantBot:
        return TenantBot(self.tenant_id, "acme", epoch, self.deps)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[BotHarness]:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    await asyncio.to_thread(upgrade, url)
    settings = load_settings(
        data_dir=tmp_path,
        database_url=url,
        reconnect_initial_delay=1,
        reconnect_max_delay=8,
        reconnect_max_attempts=3,
        reconnect_jitter=0,
    )
    db = Database(url)
    async with db.session() as s, s.begin():
        user = await UserRepository(s).create("a@example.com", "password123")
        tenant = await TenantRepository(s).create("acme", "Acme", user)
        tenant.config = {"rules": [{"match": "any", "reply": "echo: {text}"}]}
        tenant.config_version = 1
        s.add(WorkerProcess(id=WORKER, host="h", pid=1, stats={}))
        await s.flush()
        lease = await s.get(TenantLease, tenant.id)
        assert lease is not None
        lease.worker_id = WORKER
        lease.epoch = 1
        tenant_id = tenant.id
    clock = ManualClock()
    batcher = WriteBatcher(db.engine)
    batcher.start()
    webhooks = WebhookClient(clock, allow_private=True, max_attempts=2)
    world = FakeWorld()
    creds = MemoryCredentialStore()
    deps = BotDeps(
        settings=settings,
        batcher=batcher,
        clock=clock,
        webhooks=webhooks,
        connect_limiter=asyncio.Semaphore(5),
        engine_factory=world.factory(),
        credentials=lambda slug, tid: creds,
        worker_id=WORKER,
        sessions_dir=tmp_path / "sessions",
    )
    yield BotHarness(settings, db, clock, world, deps, tenant_id, creds)
    await batcher.close()
    await webhooks.close()
    await db.close()
