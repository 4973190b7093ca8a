"""TenantBot: keeps one tenant's WhatsApp session alive.

One run loop per tenant (so never two connects in flight): connect → serve until the
connection ends → classify the cause → act as the contract's table says (retry with
backoff, park until the user re-links, park for an operator, wait out a ban, or stop).
The connection itself (the engine, connecting, its events) is an `EngineConnection`;
what a user request does is `bot_requests.plan`. Every state change goes through the
`SessionRecorder`, which checks the transition table, persists the session row (fenced
by the lease) and appends to the connection timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from wafleet.config import Settings
from wafleet.engines.base import CredentialStore
from wafleet.logging import get_logger
from wafleet.states import Cause, SessionState, TenantStatus
from wafleet.worker import bot_requests, store
from wafleet.worker.batcher import WriteBatcher
from wafleet.worker.bot_requests import Request
from wafleet.worker.clock import Clock
from wafleet.worker.engine_connection import ConnectAbandoned, EngineConnection, EngineFactory, Lost
from wafleet.worker.pipeline import TenantPipeline
from wafleet.worker.reconnect import BackoffPolicy, ReconnectManager
from wafleet.worker.recovery import decide, disconnect_fields
from wafleet.worker.rules import BotConfig
from wafleet.worker.session_recorder import SessionRecorder
from wafleet.worker.store import Fence
from wafleet.worker.webhook import WebhookClient

CredentialFactory = Callable[[str, int], CredentialStore]


@dataclass
class BotDeps:
    settings: Settings
    batcher: WriteBatcher
    clock: Clock
    webhooks: WebhookClient
    connect_limiter: asyncio.Semaphore
    engine_factory: EngineFactory
    credentials: CredentialFactory
    worker_id: str
    sessions_dir: Path
    # False while the supervisor could not renew leases recently (e.g. the process was
    # paused): the local view of ownership is not trustworthy, so no bot may connect.
    lease_fresh: Callable[[], bool] = lambda: True


@dataclass
class BotSnapshot:
    slug: str
    state: SessionState
    connected: bool
    queue_depth: int
    extra: dict[str, Any] = field(default_factory=dict)


class TenantBot:
    def __init__(self, tenant_id: int, slug: str, epoch: int, deps: BotDeps) -> None:
        self.tenant_id = tenant_id
        self.slug = slug
        self.deps = deps
        self.fence = Fence(deps.worker_id, tenant_id, epoch)
        self.clock = deps.clock
        self.log = get_logger("wafleet.bot", tenant=slug)
        self.lease_lost = False
        self.session = SessionRecorder(
            fence=self.fence,
            batcher=deps.batcher,
            clock=deps.clock,
            log=self.log,
            fenced=lambda: self.lease_lost,
            on_lease_lost=self._lease_lost,
        )
        self.reconnect = ReconnectManager(
            BackoffPolicy.from_settings(deps.settings), clock=deps.clock
        )
        self.credentials = deps.credentials(slug, tenant_id)
        self.pipeline = TenantPipeline(
            slug=slug,
            fence=self.fence,
            batcher=deps.batcher,
            clock=deps.clock,
            webhooks=deps.webhooks,
            chat_queue_max=deps.settings.chat_queue_max,
            on_lease_lost=self._lease_lost,
        )
        self.connection = EngineConnection(
            slug=slug,
            session_dir=deps.sessions_dir / slug,
            credentials=self.credentials,
            engine_factory=deps.engine_factory,
            connect_limiter=deps.connect_limiter,
            session=self.session,
            pipeline=self.pipeline,
            reconnect=self.reconnect,
            clock=deps.clock,
            load_config=self._load_config,
            log=self.log,
        )
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._requests: list[Request] = []
        self._parked = False
        self._not_before: datetime | None = None
        self._stop_cause: Cause | None = None
        self._config_version = -1

    # ------------------------------------------------------------------ lifecycle
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"bot {self.slug} already started")
        self._task = asyncio.create_task(self._run_guarded(), name=f"bot:{self.slug}")

    async def stop(self, cause: Cause = Cause.SHUTDOWN, timeout: float = 10.0) -> None:
        """Orderly stop: drain chat queues, disconnect, persist DISCONNECTED (cause)."""
        if self._task is None:
            return
        if self._stop_cause is None:
            self._stop_cause = cause
        self._wake.set()
        self.connection.end(Lost(cause))
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.connection.close()

    def request(self, req: Request) -> None:
        self._requests.append(req)
        self._wake.set()
        self.connection.end(Lost(Cause.SHUTDOWN, f"{req.value} requested"))

    def reload_config(self) -> None:
        self._config_version = -1
        task = asyncio.create_task(self._load_config(), name=f"config:{self.slug}")
        task.add_done_callback(_log_task_error)

    def wake_outbox(self) -> None:
        self.pipeline.wake_outbox()

    def pair_phone(self, phone: str) -> None:
        """Pairing by phone number instead of QR (see `EngineConnection.pair_phone`)."""
        task = asyncio.create_task(
            self.connection.pair_phone(phone), name=f"pair-phone:{self.slug}"
        )
        task.add_done_callback(_log_task_error)

    def snapshot(self) -> BotSnapshot:
        return BotSnapshot(
            self.slug,
            self.state,
            self.state is SessionState.CONNECTED,
            self.pipeline.queue_depth,
        )

    @property
    def state(self) -> SessionState:
        return self.session.state

    @property
    def parked(self) -> bool:
        return self._parked

    def _lease_lost(self) -> None:
        if not self.lease_lost:
            self.lease_lost = True
            self.log.warning("lease lost: stopping without further writes")
            self._stop_cause = Cause.LEASE_LOST
            self._wake.set()
            self.connection.end(Lost(Cause.LEASE_LOST))

    # ------------------------------------------------------------------ run loop
    async def _run_guarded(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception:
            # One tenant's bug stays inside its own task; the supervisor sees it died.
            self.log.exception("tenant bot crashed")
            raise
        finally:
            await self._shutdown()

    async def _run(self) -> None:
        await self._restore()
        await self._load_config()
        self.pipeline.start()
        while self._stop_cause is None:
            if self._requests:
                await self._apply_request(self._requests.pop(0))
                continue
            if self._parked:
                await self._wait_wake(None)
                continue
            if self._not_before is not None:
                remaining = (self._not_before - self.clock.now()).total_seconds()
                if remaining > 0:
                    await self._wait_wake(remaining)
                    continue
                self._not_before = None
            lost = await self._connect_and_serve()
            if lost is not None and self._stop_cause is None:
                await self._handle_lost(lost)

    async def _wait_wake(self, timeout: float | None) -> None:
        self._wake.clear()
        if self._stop_cause is not None or self._requests:
            return
        if timeout is None:
            await self._wake.wait()
            return
        sleeper = asyncio.create_task(self.clock.sleep(timeout), name=f"wait:{self.slug}")
        waker = asyncio.create_task(self._wake.wait(), name=f"wake:{self.slug}")
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
            await asyncio.gather(sleeper, waker, return_exceptions=True)

    async def _restore(self) -> None:
        """Pick up where the session was left: logged out stays parked, a ban is waited out."""
        async with self.deps.batcher.engine.connect() as conn:
            row = await store.load_session(conn, self.tenant_id)
            tenant = await store.load_tenant(conn, self.tenant_id)
        if row is None or tenant is None:
            raise RuntimeError(f"tenant {self.slug} has no session row")
        self.session.state = SessionState(row["state"])
        self.reconnect.attempt = int(row.get("reconnect_attempt") or 0)
        if tenant["status"] == TenantStatus.ERROR.value:
            self._parked = True
        if self.state is SessionState.LOGGED_OUT:
            self._parked = True
        elif self.state is not SessionState.DISCONNECTED:
            # CONNECTING/QR_READY/CONNECTED left by a previous process: not true anymore.
            await self.session.transition(SessionState.DISCONNECTED, kind="restored")
        ban = row.get("ban_expires_at")
        if ban is not None and ban > self.clock.now():
            self._not_before = ban
        if row.get("last_disconnect_cause") == Cause.QR_TIMEOUT.value:
            self._parked = True

    async def _load_config(self) -> None:
        async with self.deps.batcher.engine.connect() as conn:
            tenant = await store.load_tenant(conn, self.tenant_id)
        if tenant is None or tenant["config_version"] == self._config_version:
            return
        try:
            cfg = BotConfig.model_validate(tenant["config"] or {})
        except ValueError as err:
            self.log.error("stored bot config is invalid; keeping the previous one", error=str(err))
            return
        self.pipeline.set_config(cfg)
        self._config_version = tenant["config_version"]

    # ------------------------------------------------------------------ connecting
    async def _may_connect(self) -> bool:
        """Never (re)connect on a stale lease: two clients on one account make WhatsApp
        replace the session."""
        while not self.deps.lease_fresh():
            await self._wait_wake(self.deps.settings.heartbeat_interval)
            if self._stop_cause is not None:
                return False
        try:
            async with self.deps.batcher.engine.connect() as conn:
                held = (await conn.execute(select(self.fence.holds()))).scalar()
        except (SQLAlchemyError, OSError):
            return False
        if not held:
            self._lease_lost()
            return False
        return True

    async def _connect_and_serve(self) -> Lost | None:
        if not await self._may_connect():
            if self._stop_cause is None and not self.lease_lost:
                await self._wait_wake(self.deps.settings.heartbeat_interval)
            return None
        try:
            failed = await self.connection.connect(abandon=self._abandoning)
        except ConnectAbandoned:
            return None
        if failed is not None:
            return failed
        lost = await self.connection.ended()
        if lost.cause in (Cause.SHUTDOWN, Cause.LEASE_LOST, Cause.PAUSED) or self._requests:
            # We are the ones ending it: close without a lost-connection classification.
            await self.connection.disconnect()
            return None
        await self.pipeline.disconnected()
        return lost

    def _abandoning(self) -> bool:
        """Stopping, or a user request waits: give up the connection attempt."""
        return self._stop_cause is not None or bool(self._requests)

    # ------------------------------------------------------------------ classification
    async def _handle_lost(self, lost: Lost) -> None:
        rec = decide(lost.cause, lost.detail, lost.expires_at, self.reconnect, self.clock.now())
        self.log.info(
            "disconnected", cause=lost.cause.value, action=rec.action.value, detail=lost.detail
        )
        if rec.stop:  # Action.NONE: an orderly stop by us
            self._stop_cause = self._stop_cause or lost.cause
            return
        self._parked = rec.park
        self._not_before = rec.retry_at
        if rec.wipe_credentials:
            await self.credentials.wipe()
            await self.connection.close()
        await self.session.transition(
            rec.target,
            kind="disconnect",
            cause=lost.cause,
            detail=lost.detail,
            tenant=rec.tenant,
            **rec.session,
        )

    # ------------------------------------------------------------------ requests
    async def _apply_request(self, req: Request) -> None:
        self.log.info("applying request", request=req.value)
        await self.connection.disconnect()
        self.reconnect.reset()
        self._not_before = None
        self._parked = False
        todo = bot_requests.plan(req, self.clock.now())
        if todo.logout:
            await self.connection.logout()
        if todo.wipe_credentials:
            await self.credentials.wipe()
            await self.connection.close()
        self._parked = todo.park
        await self.session.transition(
            todo.target,
            kind=todo.kind,
            cause=todo.cause,
            detail=todo.detail,
            tenant=todo.tenant,
            **todo.session,
        )

    async def _shutdown(self) -> None:
        cause = self._stop_cause or Cause.SHUTDOWN
        fenced = self.lease_lost or cause is Cause.LEASE_LOST
        if fenced:
            # Someone else may own the tenant now: let go of WhatsApp before anything else.
            await self.connection.disconnect()
        try:
            await asyncio.wait_for(self.pipeline.stop(), 2.0 if fenced else 15.0)
        except (TimeoutError, SQLAlchemyError, OSError) as err:
            self.log.warning("pipeline did not stop cleanly", error=repr(err)[:200])
        await self.connection.disconnect()
        await self.connection.close()
        if self.lease_lost or cause is Cause.LEASE_LOST:
            return  # another worker owns the tenant now: write nothing
        if self.state in (SessionState.LOGGED_OUT, SessionState.DISCONNECTED) and cause in (
            Cause.SHUTDOWN,
        ):
            return
        with contextlib.suppress(Exception):
            await self.session.transition(
                SessionState.DISCONNECTED
                if self.state is not SessionState.LOGGED_OUT
                else self.state,
                kind="stop",
                cause=cause,
                detail=f"stopped ({cause.value})",
                **disconnect_fields(cause, "", self.clock.now()),
                reconnect_active=False,
                next_retry_at=None,
            )


def _log_task_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        get_logger("wafleet.bot").error(
            "background task failed", task=task.get_name(), error=repr(task.exception())
        )
