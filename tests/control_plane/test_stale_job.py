"""The stale-worker job with an injected clock (no real waiting)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.control_plane.conftest import NOW
from tests.control_plane.seed import Fleet, add_worker
from wafleet.control_plane.jobs import StaleWorkerJob, job_period
from wafleet.db.engine import Database
from wafleet.db.models import ConnectionEvent, TenantLease, WhatsAppSession, WorkerProcess

STALE_AFTER = 30.0


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_migrated_url")
        return url
    return sqlite_url


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def _worker(db: Database, wid: str) -> WorkerProcess:
    async with db.session() as s:
        w = await s.get(WorkerProcess, wid)
        assert w is not None
        return w


async def test_silent_worker_becomes_stale_and_releases_tenants(db: Database, fleet: Fleet):
    clock = FakeClock(NOW)
    await add_worker(db, "w1", heartbeat=NOW, tenant_ids=[fleet.a_id, fleet.b_id])
    await add_worker(db, "w2", heartbeat=NOW + timedelta(seconds=25), tenant_ids=[])
    async with db.session() as s, s.begin():  # a logged-out session is left alone
        ws = await s.get(WhatsAppSession, fleet.b_id)
        assert ws is not None
        ws.state = "LOGGED_OUT"
    job = StaleWorkerJob(db, stale_after=STALE_AFTER, period=1.0, clock=clock)

    clock.advance(STALE_AFTER - 1)
    assert await job.run_once() == []
    assert (await _worker(db, "w1")).status == "RUNNING"

    clock.advance(2)  # 31 s of silence
    (marked,) = await job.run_once()
    assert (marked.worker_id, marked.sessions, marked.leases) == ("w1", 1, 2)
    assert (await _worker(db, "w1")).status == "STALE"
    assert (await _worker(db, "w2")).status == "RUNNING"  # heard 6 s ago

    async with db.session() as s:
        a = await s.get(WhatsAppSession, fleet.a_id)
        assert a is not None
        assert a.state == "DISCONNECTED"
        assert (a.last_disconnect_cause, a.last_disconnect_action) == ("worker_stale", "retrying")
        assert a.last_disconnect_at == clock.now
        assert a.connected_since is None
        b = await s.get(WhatsAppSession, fleet.b_id)
        assert b is not None
        assert b.state == "LOGGED_OUT"
        assert b.last_disconnect_cause is None
        leases = (await s.execute(select(TenantLease))).scalars().all()
        assert {(lease.worker_id, lease.epoch) for lease in leases} == {(None, 3)}
        assert all(lease.expires_at == clock.now for lease in leases)
        (ev,) = (
            await s.execute(select(ConnectionEvent).where(ConnectionEvent.cause == "worker_stale"))
        ).scalars()
        assert (ev.tenant_id, ev.kind, ev.from_state, ev.to_state, ev.worker_id) == (
            fleet.a_id,
            "disconnect",
            "CONNECTED",
            "DISCONNECTED",
            "w1",
        )

    # idempotent: a STALE worker is not processed again
    clock.advance(60)
    marked_again = await job.run_once()
    assert [m.worker_id for m in marked_again] == ["w2"]  # now w2 is silent too


async def test_a_heartbeat_brings_it_back_and_it_can_go_stale_again(db: Database, fleet: Fleet):
    clock = FakeClock(NOW)
    await add_worker(db, "w1", heartbeat=NOW, tenant_ids=[fleet.a_id])
    job = StaleWorkerJob(db, stale_after=STALE_AFTER, period=1.0, clock=clock)
    clock.advance(STALE_AFTER + 1)
    assert len(await job.run_once()) == 1
    # the worker's own heartbeat (its side) sets it RUNNING again
    async with db.session() as s, s.begin():
        w = await s.get(WorkerProcess, "w1")
        assert w is not None
        w.status, w.last_heartbeat_at = "RUNNING", clock.now
    clock.advance(5)
    assert await job.run_once() == []
    assert (await _worker(db, "w1")).status == "RUNNING"
    clock.advance(STALE_AFTER)
    assert len(await job.run_once()) == 1


async def test_stopped_workers_are_not_touched(db: Database, fleet: Fleet):
    clock = FakeClock(NOW + timedelta(hours=1))
    await add_worker(db, "w0", heartbeat=NOW, tenant_ids=[fleet.a_id], status="STOPPED")
    job = StaleWorkerJob(db, stale_after=STALE_AFTER, period=1.0, clock=clock)
    assert await job.run_once() == []
    assert (await _worker(db, "w0")).status == "STOPPED"


def _cancel_after(n: int, sleeps: list[float]):
    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) >= n:
            raise asyncio.CancelledError

    return fake_sleep


async def test_run_loop_sleeps_the_period(db: Database, fleet: Fleet):
    sleeps: list[float] = []
    job = StaleWorkerJob(
        db,
        stale_after=STALE_AFTER,
        period=0.5,
        clock=FakeClock(NOW),
        sleep=_cancel_after(3, sleeps),
    )
    with pytest.raises(asyncio.CancelledError):
        await job.run()
    assert sleeps == [0.5, 0.5, 0.5]
    assert job.runs == 3


async def test_run_loop_survives_a_broken_database(tmp_path: Path):
    bad = tmp_path / "garbage.db"
    bad.write_bytes(b"not a database" * 100)
    sleeps: list[float] = []
    async with Database(f"sqlite:///{bad}") as broken:
        job = StaleWorkerJob(
            broken, stale_after=1, period=0.25, clock=FakeClock(NOW), sleep=_cancel_after(3, sleeps)
        )
        with pytest.raises(asyncio.CancelledError):
            await job.run()
    assert sleeps == [0.25, 0.25, 0.25]  # every pass failed, the loop went on
    assert job.runs == 0


def test_job_period():
    assert job_period(10, 30) == 10
    assert job_period(10, 15) == 5
    assert job_period(0.5, 1.5) == 0.5
    assert job_period(0.001, 0.003) == 0.05


async def test_a_leased_tenant_counts_as_held(db: Database, fleet: Fleet):
    """The worker claimed the lease but its first session write has not landed yet."""
    clock = FakeClock(NOW)
    await add_worker(db, "w1", heartbeat=NOW, tenant_ids=[fleet.a_id])
    async with db.session() as s, s.begin():
        ws = await s.get(WhatsAppSession, fleet.a_id)
        assert ws is not None
        ws.worker_id, ws.state = None, "CONNECTING"
    job = StaleWorkerJob(db, stale_after=STALE_AFTER, period=1.0, clock=clock)
    clock.advance(STALE_AFTER + 1)
    (marked,) = await job.run_once()
    assert (marked.sessions, marked.leases) == (1, 1)
    async with db.session() as s:
        ws = await s.get(WhatsAppSession, fleet.a_id)
        assert ws is not None
        assert (ws.state, ws.last_disconnect_cause) == ("DISCONNECTED", "worker_stale")
