"""Regression tests for the bugs the hardening runs found (each named after what it
guards). Scripted engine, real SQLite, manual clock — see tests/worker/conftest.py.

Found by test_db_outage.py (PostgreSQL stopped under load, 11 of ~360 inbound messages
never answered): self-fencing stopped a bot while the database was down; its pipeline's
``stop()`` raised on the final flush and left its writer loop running, which stored the
buffered messages once the database was back — after the new bot's start-up sweep — so
the new bot saw their redelivery as duplicates and never processed them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from tests.hardening.conftest import Tally
from tests.worker.conftest import WORKER, BotHarness, harness
from tests.worker.fakes import FakeWorld
from tests.worker.test_bot import connected_bot, until
from wafleet.config import load_settings
from wafleet.db.engine import Database
from wafleet.db.migrate import upgrade
from wafleet.db.models import MessageLog
from wafleet.db.repositories import TenantRepository, UserRepository
from wafleet.engines.base import IncomingMessage
from wafleet.engines.credentials import MemoryCredentialStore
from wafleet.worker import store
from wafleet.worker.pipeline import TenantPipeline
from wafleet.worker.store import Fence, Inbound
from wafleet.worker.supervisor import Supervisor

__all__ = ["harness"]

TALLY = Tally("regressions")


def _db_down(*_args: Any, **_kw: Any) -> Any:
    raise OperationalError("statement", {}, ConnectionRefusedError(111, "Connection refused"))


async def _rows(h: BotHarness, direction: str) -> list[MessageLog]:
    async with h.db.session() as s:
        res = await s.execute(select(MessageLog).where(MessageLog.direction == direction))
        return list(res.scalars().all())


async def test_pipeline_stop_reaps_its_tasks_while_the_database_is_down(
    harness: BotHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    pipe = TenantPipeline(
        slug="acme",
        fence=Fence(WORKER, h.tenant_id, 1),
        batcher=h.deps.batcher,
        clock=h.clock,
        webhooks=h.deps.webhooks,
        chat_queue_max=10,
        on_lease_lost=lambda: None,
    )
    pipe.start()
    tasks = list(pipe._tasks)
    monkeypatch.setattr(store, "insert_inbound_fn", _db_down)
    pipe.on_incoming(IncomingMessage("M1", "+1555", "+1555", "hi", datetime.now(UTC)))
    await until(lambda: h.clock.pending_sleeps, "the writer loop retrying")
    TALLY.faults += 1
    with pytest.raises(OperationalError):
        await pipe.stop(drain_timeout=0.1)  # the final flush cannot store the message
    assert all(t.done() for t in tasks), [t.get_name() for t in tasks if not t.done()]
    h.clock.advance(60)
    await asyncio.sleep(0.05)
    assert await _rows(h, "in") == []  # nothing stored behind the stopped bot's back
    TALLY.report()


async def test_redelivered_message_stored_after_the_startup_sweep_is_processed(
    harness: BotHarness,
) -> None:
    h = harness
    bot = await connected_bot(h)
    engine = h.world.engine
    assert engine is not None
    await until(lambda: not bot.pipeline._holding, "start-up sweep done")
    # an earlier bot of this tenant stored it (RECEIVED) after our sweep, without acking
    m = h.world.message("+15550009", "stored by a stopped bot")
    await h.deps.batcher.submit(
        store.insert_inbound_fn(
            [Inbound(h.tenant_id, m.id, m.chat, m.sender, m.text, m.at)], h.clock.now()
        )
    )
    await engine.emit(m)  # WhatsApp redelivers it (never acked)
    TALLY.inbound += 1
    await until(lambda: len(h.world.sent) == 1, "the reply")
    assert h.world.sent[0][1] == "echo: stored by a stopped bot"
    [row] = await _rows(h, "in")
    assert row.status == "PROCESSED"
    await until(lambda: m.id in h.world.acked, "acked")
    await bot.stop()
    TALLY.report()


async def test_outbox_keeps_sending_after_a_database_error(
    harness: BotHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    bot = await connected_bot(h)
    real = store.pending_outbox
    failures = [1]

    async def flaky(*args: Any, **kw: Any) -> Any:
        if failures:
            failures.pop()
            _db_down()
        return await real(*args, **kw)

    monkeypatch.setattr(store, "pending_outbox", flaky)
    now = h.clock.now()
    async with h.db.session() as s, s.begin():
        s.add(
            MessageLog(
                tenant_id=h.tenant_id,
                direction="out",
                wa_id="WF-1",
                chat="+15550010",
                sender="me",
                body="queued from the portal",
                status="PENDING",
                created_at=now,
                updated_at=now,
            )
        )
    bot.wake_outbox()
    TALLY.faults += 1
    TALLY.outbound += 1
    await until(lambda: h.clock.pending_sleeps == [0.5], "the outbox loop waiting to retry")
    h.clock.advance(0.5)
    await until(lambda: [x for _, _, x in h.world.sent] == ["WF-1"], "sent after the error")
    await until(
        lambda: _sent_status(h),
        "marked SENT",
    )
    await bot.stop()
    TALLY.report()


async def _sent_status(h: BotHarness) -> bool:
    return [r.status for r in await _rows(h, "out")] == ["SENT"]


# Found by test_db_outage.py (SQLite locked 10 s): the heartbeat's ``wait_for`` waited
# for the cancelled write's cleanup, stuck behind the lock — the worker self-fenced only
# after the lock ended (10.4 s), long past its 3 s lease TTL.
async def test_self_fencing_happens_while_the_database_is_still_locked(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    url = f"sqlite:///{path}"
    await asyncio.to_thread(upgrade, url)
    settings = load_settings(
        data_dir=tmp_path, database_url=url, heartbeat_interval=0.5, stale_after=3, lease_ttl=3
    )
    db = Database(url)
    async with db.session() as s, s.begin():
        user = await UserRepository(s).create("a@example.com", "password123")
        await TenantRepository(s).create("acme", "Acme", user)
    world, creds = FakeWorld(), MemoryCredentialStore()
    sup = Supervisor(settings, db, engine_factory=world.factory(), credentials=lambda _s, _t: creds)
    await sup.start()
    locker: sqlite3.Connection | None = None
    try:
        await until(lambda: sup.bots and world.engine is not None, "the tenant's bot running")
        locker = sqlite3.connect(path, timeout=30, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another writer; the busy timeout is 30 s
        TALLY.faults += 1
        # lease TTL 3 s: the bots must be stopped well within it, lock or no lock
        await until(lambda: sup._fenced and not sup.bots, "self-fencing under the lock", 8.0)
        locker.execute("ROLLBACK")
        locker.close()
        locker = None
        await until(lambda: not sup._fenced and sup.bots, "reclaimed after the lock", 20.0)
    finally:
        if locker is not None:
            locker.execute("ROLLBACK")
            locker.close()
        await sup.stop()
        await db.close()
    TALLY.report()
