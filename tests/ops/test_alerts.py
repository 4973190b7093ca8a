"""`AlertDispatcher` against a real SQLite database (rows written the way the worker and
the stale-worker job write them) and a real HTTP receiver that verifies the HMAC.
Time is injected: the rate limit's clock is a counter, retry sleeps are recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from tests.ops.receiver import Receiver, running_receiver
from tests.support.procs import free_port
from wafleet.db.base import utcnow
from wafleet.db.engine import Database
from wafleet.db.models import ConnectionEvent, Tenant, WhatsAppSession, WorkerProcess
from wafleet.db.repositories import TenantRepository, UserRepository
from wafleet.ops.alert_delivery import AlertSender, RateLimiter, TokenBucket
from wafleet.ops.alerts import AlertDispatcher
from wafleet.states import Cause, SessionState, TenantStatus, WorkerStatus

KEY = "p" * 40


@dataclass
class Ticks:
    """Injected monotonic clock and sleep: nothing waits on real time."""

    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver(KEY) as r:
        yield r


@pytest.fixture
async def tenants(migrated_db: Database) -> dict[str, int]:
    async with migrated_db.session() as s, s.begin():
        owner = await UserRepository(s).create("o@example.com", "password123")
        return {
            slug: (await TenantRepository(s).create(slug, slug.title(), owner)).id
            for slug in ("acme", "beta")
        }


def make(db: Database, receiver: Receiver, ticks: Ticks, *, capacity: int = 5) -> AlertDispatcher:
    sender = AlertSender(receiver.url, KEY, sleep=ticks.sleep, initial_delay=1.0)
    limiter = RateLimiter(capacity, 600, monotonic=ticks)
    return AlertDispatcher(db, sender, limiter=limiter, monotonic=ticks, sleep=ticks.sleep)


@pytest.fixture
async def dispatcher(
    migrated_db: Database, receiver: Receiver, tenants: dict[str, int]
) -> AsyncIterator[AlertDispatcher]:
    d = make(migrated_db, receiver, Ticks(), capacity=3)
    await d.prime()
    yield d
    await d.stop()


async def transition(
    db: Database,
    tenant_id: int,
    to: SessionState,
    *,
    cause: Cause | None = None,
    detail: str | None = None,
    tenant_status: TenantStatus | None = None,
    error_message: str | None = None,
    **session: object,
) -> None:
    """What the worker's store writes in one transaction: the session row, the tenant's
    status when it changes, and one timeline event."""
    now = utcnow()
    async with db.session() as s, s.begin():
        ws = await s.get(WhatsAppSession, tenant_id)
        assert ws is not None
        frm = ws.state
        ws.state = to.value
        if cause is not None:
            ws.last_disconnect_cause = cause.value
            ws.last_disconnect_at = now
            ws.last_disconnect_detail = detail
        for k, v in session.items():
            setattr(ws, k, v)
        if tenant_status is not None:
            t = await s.get(Tenant, tenant_id)
            assert t is not None
            t.status = tenant_status.value
            t.error_message = error_message
        s.add(
            ConnectionEvent(
                tenant_id=tenant_id,
                at=now,
                kind="disconnect" if cause else "transition",
                from_state=frm,
                to_state=to.value,
                cause=cause.value if cause else None,
                detail=detail,
                worker_id="w1",
            )
        )


async def connected(db: Database, tenant_id: int) -> None:
    await transition(db, tenant_id, SessionState.CONNECTING)
    await transition(db, tenant_id, SessionState.CONNECTED, phone="+15550001")


async def poll(d: AlertDispatcher) -> list[str]:
    raised = [a.kind for a in await d.poll_once()]
    await d.drain()
    return raised


# ------------------------------------------------------------------ signed alerts
async def test_logout_then_recovery_are_signed_alerts(
    dispatcher: AlertDispatcher, migrated_db: Database, receiver: Receiver, tenants: dict[str, int]
) -> None:
    acme = tenants["acme"]
    await connected(migrated_db, acme)
    assert await poll(dispatcher) == []  # connecting and connecting again is not news
    await transition(
        migrated_db, acme, SessionState.LOGGED_OUT, cause=Cause.LOGGED_OUT, detail="device removed"
    )
    assert await poll(dispatcher) == ["logged_out"]
    [alert] = receiver.alerts
    assert receiver.bad_signatures == 0
    assert alert["kind"] == "logged_out"
    assert alert["tenant"] == "acme"
    assert datetime.fromisoformat(alert["at"]) <= datetime.now(UTC)
    assert "Logged out from the phone on" in alert["detail"]
    assert "wafleet tenant relink acme" in alert["next_step"]
    assert alert["cause"] == "logged_out"

    await transition(migrated_db, acme, SessionState.DISCONNECTED)  # relink
    await transition(migrated_db, acme, SessionState.QR_READY)
    assert await poll(dispatcher) == []
    await connected(migrated_db, acme)
    assert await poll(dispatcher) == ["recovered"]
    rec = receiver.alerts[-1]
    assert rec["tenant"] == "acme"
    assert rec["recovered_from"] == ["logged_out"]
    assert receiver.kinds() == ["logged_out", "recovered"]


async def test_wrong_key_is_rejected_by_the_receiver(
    migrated_db: Database, receiver: Receiver, tenants: dict[str, int]
) -> None:
    ticks = Ticks()
    sender = AlertSender(receiver.url, "x" * 40, sleep=ticks.sleep, max_attempts=1)
    d = AlertDispatcher(migrated_db, sender, monotonic=ticks, sleep=ticks.sleep)
    await d.prime()
    await transition(migrated_db, tenants["acme"], SessionState.LOGGED_OUT, cause=Cause.LOGGED_OUT)
    await poll(d)
    assert receiver.bad_signatures == 1
    assert receiver.alerts == []
    assert d.stats.failed == 1  # 401 is permanent: no retry
    await d.stop()


# ------------------------------------------------------------------ dedupe, rate limit
async def test_repeated_ban_is_deduplicated_until_connected(
    dispatcher: AlertDispatcher, migrated_db: Database, receiver: Receiver, tenants: dict[str, int]
) -> None:
    beta = tenants["beta"]
    until = utcnow() + timedelta(hours=1)
    for _ in range(3):  # banned, retried at expiry, banned again ...
        await transition(
            migrated_db,
            beta,
            SessionState.DISCONNECTED,
            cause=Cause.TEMP_BANNED,
            ban_expires_at=until,
        )
        await transition(migrated_db, beta, SessionState.CONNECTING)
    await transition(migrated_db, beta, SessionState.DISCONNECTED, cause=Cause.TEMP_BANNED)
    assert await poll(dispatcher) == ["temp_banned"]
    assert dispatcher.stats.deduplicated == 3
    ban = receiver.alerts[0]
    assert ban["until"] == until.isoformat()
    assert "Temporarily banned" in ban["detail"]
    await connected(migrated_db, beta)
    assert await poll(dispatcher) == ["recovered"]
    assert receiver.kinds() == ["temp_banned", "recovered"]


async def test_flapping_session_is_rate_limited(
    migrated_db: Database, receiver: Receiver, tenants: dict[str, int]
) -> None:
    ticks = Ticks()
    d = make(migrated_db, receiver, ticks, capacity=3)
    await d.prime()
    acme = tenants["acme"]
    for _ in range(5):  # 10 alerts raised: logged_out + recovered, five times
        await transition(migrated_db, acme, SessionState.LOGGED_OUT, cause=Cause.LOGGED_OUT)
        await poll(d)
        await connected(migrated_db, acme)
        await poll(d)
    assert receiver.kinds() == ["logged_out", "recovered", "logged_out"]
    assert d.stats.suppressed == 7
    # ten minutes later the bucket is full again; the next alert says what was dropped
    ticks.now += 600
    await transition(migrated_db, acme, SessionState.LOGGED_OUT, cause=Cause.LOGGED_OUT)
    await poll(d)
    assert receiver.kinds()[-1] == "logged_out"
    assert receiver.alerts[-1]["suppressed"] == 7
    # the other tenant has its own bucket
    await transition(migrated_db, tenants["beta"], SessionState.LOGGED_OUT, cause=Cause.LOGGED_OUT)
    await poll(d)
    assert receiver.alerts[-1]["tenant"] == "beta"
    await d.stop()


def test_token_bucket_refills_and_limiter_memory_is_bounded() -> None:
    b = TokenBucket(3, 600, now=0)
    assert [b.take(0) for _ in range(4)] == [True, True, True, False]
    assert b.take(200)  # one token per 200 s
    assert not b.take(200)
    t = Ticks()
    lim = RateLimiter(2, 600, max_keys=100, monotonic=t)
    for i in range(1000):
        assert lim.allow(f"tenant:{i}")
    assert len(lim) <= 100
    assert lim.allow("tenant:999")
    assert not lim.allow("tenant:999")
    assert lim.take_suppressed("tenant:999") == 1


# ------------------------------------------------------------------ ERROR and workers
async def test_tenant_error_alert_once_while_it_lasts(
    dispatcher: AlertDispatcher, migrated_db: Database, receiver: Receiver, tenants: dict[str, int]
) -> None:
    acme = tenants["acme"]
    await transition(
        migrated_db,
        acme,
        SessionState.DISCONNECTED,
        cause=Cause.NETWORK,
        detail="connection refused",
        tenant_status=TenantStatus.ERROR,
        error_message="Gave up after 20 reconnect attempts",
    )
    assert await poll(dispatcher) == ["tenant_error"]
    assert await poll(dispatcher) == []  # still ERROR: not again
    err = receiver.alerts[0]
    assert err["tenant"] == "acme"
    assert err["error_message"] == "Gave up after 20 reconnect attempts"
    assert "wafleet tenant restart acme" in err["next_step"]
    # restart pressed: ACTIVE again, then it connects
    await transition(
        migrated_db, acme, SessionState.DISCONNECTED, tenant_status=TenantStatus.ACTIVE
    )
    assert await poll(dispatcher) == []
    await connected(migrated_db, acme)
    assert await poll(dispatcher) == ["recovered"]
    assert receiver.alerts[-1]["recovered_from"] == ["tenant_error"]


async def test_stale_worker_and_its_recovery(
    dispatcher: AlertDispatcher, migrated_db: Database, receiver: Receiver
) -> None:
    async with migrated_db.session() as s, s.begin():
        s.add(WorkerProcess(id="w9", host="box-9", pid=99, stats={}))
    assert await poll(dispatcher) == []
    async with migrated_db.session() as s, s.begin():
        w = await s.get(WorkerProcess, "w9")
        assert w is not None
        w.status = WorkerStatus.STALE.value
        w.last_heartbeat_at = utcnow() - timedelta(seconds=45)
    assert await poll(dispatcher) == ["worker_stale"]
    assert await poll(dispatcher) == []
    stale = receiver.alerts[0]
    assert stale["tenant"] is None
    assert stale["worker"] == "w9"
    assert "box-9" in stale["detail"]
    async with migrated_db.session() as s, s.begin():
        w = await s.get(WorkerProcess, "w9")
        assert w is not None
        w.status = WorkerStatus.RUNNING.value
    assert await poll(dispatcher) == ["worker_recovered"]


async def test_conditions_present_at_start_are_not_alerted(
    migrated_db: Database, receiver: Receiver, tenants: dict[str, int]
) -> None:
    await transition(
        migrated_db,
        tenants["acme"],
        SessionState.DISCONNECTED,
        cause=Cause.BANNED,
        tenant_status=TenantStatus.ERROR,
        error_message="banned",
    )
    await transition(migrated_db, tenants["beta"], SessionState.LOGGED_OUT, cause=Cause.LOGGED_OUT)
    d = make(migrated_db, receiver, Ticks())
    await d.prime()
    assert await poll(d) == []
    assert receiver.alerts == []
    await d.stop()


# ------------------------------------------------------------------ delivery retries
async def test_retries_on_5xx_not_on_4xx(
    migrated_db: Database, receiver: Receiver, tenants: dict[str, int]
) -> None:
    ticks = Ticks()
    d = make(migrated_db, receiver, ticks)
    await d.prime()
    receiver.script = [500, 503, 200]
    await transition(migrated_db, tenants["acme"], SessionState.LOGGED_OUT, cause=Cause.LOGGED_OUT)
    await poll(d)
    assert receiver.kinds() == ["logged_out"]
    assert ticks.slept == [1.0, 2.0]  # exponential backoff between the three attempts
    assert d.stats.sent == 1

    receiver.script = [400]
    await transition(migrated_db, tenants["beta"], SessionState.LOGGED_OUT, cause=Cause.LOGGED_OUT)
    await poll(d)
    assert receiver.requests == 4  # the 400 was not retried
    assert d.stats.failed == 1
    await d.stop()


async def test_unreachable_receiver_gives_up_after_bounded_attempts(
    migrated_db: Database, tenants: dict[str, int]
) -> None:
    ticks = Ticks()
    sender = AlertSender(
        f"http://127.0.0.1:{free_port()}/x", KEY, sleep=ticks.sleep, max_attempts=3
    )
    d = AlertDispatcher(migrated_db, sender, monotonic=ticks, sleep=ticks.sleep)
    await d.prime()
    await transition(migrated_db, tenants["acme"], SessionState.LOGGED_OUT, cause=Cause.LOGGED_OUT)
    await poll(d)
    assert ticks.slept == [1.0, 2.0]
    assert d.stats.failed == 1
    await d.stop()


async def test_start_stop_runs_named_tasks_and_delivers(
    migrated_db: Database, receiver: Receiver, tenants: dict[str, int]
) -> None:
    import asyncio

    sender = AlertSender(receiver.url, KEY)
    d = AlertDispatcher(migrated_db, sender, poll_interval=0.05)
    await d.start()
    names = {t.get_name() for t in asyncio.all_tasks()}
    assert {"alerts:watch", "alerts:send"} <= names
    await transition(migrated_db, tenants["acme"], SessionState.LOGGED_OUT, cause=Cause.LOGGED_OUT)
    async with asyncio.timeout(10):
        while not receiver.alerts:
            await asyncio.sleep(0.02)
    await d.stop()
    names = {t.get_name() for t in asyncio.all_tasks()}
    assert not {"alerts:watch", "alerts:send"} & names
    assert receiver.kinds() == ["logged_out"]
