"""TenantBot: keeps one tenant's WhatsApp session alive.

One run loop per tenant (so never two connects in flight): connect → serve until the
connection ends → classify the cause → act as the contract's table says (retry with
backoff, park until the user re-links, park for an operator, wait out a ban, or stop).
Every state change goes through `_transition`, which checks the transition table,
persists the session row (fenced by the lease) and appends to the connection timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from wafleet.config import Settings
from wafleet.engines.base import (
    Connected,
    ConnectFailed,
    ConnectionLost,
    CredentialStore,
    Engine,
    EngineContext,
    EngineError,
    EngineEvent,
    IncomingMessage,
    KeepAliveRestored,
    KeepAliveTimeout,
    PairCode,
    PairSuccess,
    QrCode,
    Receipt,
    TemporaryBan,
)
from wafleet.logging import get_logger
from wafleet.states import Action, Cause, SessionState, TenantStatus, action_for
from wafleet.worker import store
from wafleet.worker.batcher import WriteBatcher
from wafleet.worker.clock import Clock
from wafleet.worker.pipeline import TenantPipeline
from wafleet.worker.reconnect import BackoffPolicy, ReconnectManager
from wafleet.worker.recovery import decide
from wafleet.worker.rules import BotConfig
from wafleet.worker.session_recorder import SessionRecorder
from wafleet.worker.store import Fence
from wafleet.worker.webhook import WebhookClient

CONNECT_TIMEOUT = 45.0
UNKNOWN_BAN_WAIT = timedelta(hours=1)
EngineFactory = Callable[[EngineContext], Engine]
CredentialFactory = Callable[[str, int], CredentialStore]


class Request(StrEnum):
    RESTART = "restart"
    RELINK = "relink"
    LOGOUT = "logout"


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
class _Lost:
    cause: Cause
    detail: str = ""
    expires_at: datetime | None = None


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
        self.engine: Engine | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lost: asyncio.Future[_Lost] | None = None
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
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(_Lost(cause))
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._close_engine()

    def request(self, req: Request) -> None:
        self._requests.append(req)
        self._wake.set()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(_Lost(Cause.SHUTDOWN, f"{req.value} requested"))

    def reload_config(self) -> None:
        self._config_version = -1
        task = asyncio.create_task(self._load_config(), name=f"config:{self.slug}")
        task.add_done_callback(_log_task_error)

    def wake_outbox(self) -> None:
        self.pipeline.wake_outbox()

    def pair_phone(self, phone: str) -> None:
        """Pairing by phone number instead of QR: ask the engine for the code to type on
        the phone, and publish it on the session row (``pair_code``)."""
        task = asyncio.create_task(self._pair_phone(phone), name=f"pair-phone:{self.slug}")
        task.add_done_callback(_log_task_error)

    async def _pair_phone(self, phone: str) -> None:
        engine = self.engine
        if engine is None or self.state is not SessionState.QR_READY:
            await self._record(
                "pair_code_refused",
                detail=f"pairing by phone needs a session waiting for a link (now {self.state})",
            )
            return
        try:
            code = await engine.pair_phone(phone)
        except (EngineError, OSError) as err:
            await self._record("pair_code_refused", detail=f"{err.__class__.__name__}: {err}")
            return
        await self._record("pair_code", detail=f"pairing code issued for {phone}", pair_code=code)

    def snapshot(self) -> BotSnapshot:
        return BotSnapshot(
            self.slug,
            self.state,
            self.state is SessionState.CONNECTED,
            self.pipeline.queue_depth,
        )

    @property
    def parked(self) -> bool:
        return self._parked

    def _lease_lost(self) -> None:
        if not self.lease_lost:
            self.lease_lost = True
            self.log.warning("lease lost: stopping without further writes")
            self._stop_cause = Cause.LEASE_LOST
            self._wake.set()
            if self._lost is not None and not self._lost.done():
                self._lost.set_result(_Lost(Cause.LEASE_LOST))

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
            await self._transition(SessionState.DISCONNECTED, kind="restored")
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
    def _ensure_engine(self) -> Engine:
        if self.engine is None:
            ctx = EngineContext(
                tenant_slug=self.slug,
                session_dir=self.deps.sessions_dir / self.slug,
                credentials=self.credentials,
                sink=self._on_event,
            )
            self.engine = self.deps.engine_factory(ctx)
            self.pipeline.ack_engine = self.engine
        return self.engine

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

    async def _connect_and_serve(self) -> _Lost | None:
        if not await self._may_connect():
            if self._stop_cause is None and not self.lease_lost:
                await self._wait_wake(self.deps.settings.heartbeat_interval)
            return None
        engine = self._ensure_engine()
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        await self._transition(SessionState.CONNECTING)
        async with self.deps.connect_limiter:
            if self._stop_cause is not None or self._requests:
                return None
            connecting = asyncio.create_task(
                asyncio.wait_for(engine.connect(), CONNECT_TIMEOUT), name=f"connect:{self.slug}"
            )
            either: list[asyncio.Future[Any]] = [connecting, self._lost]
            try:
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not connecting.done() and (
                    self._stop_cause is not None or self._requests or not self._lost.done()
                ):
                    # Stop, lease loss or a user request while connecting: a dead server
                    # can leave connect() hanging for its whole timeout; don't wait it out.
                    connecting.cancel()
                    await asyncio.gather(connecting, return_exceptions=True)
            if connecting.cancelled():
                return None
            try:
                await connecting
            except ConnectFailed as err:
                return _Lost(err.cause, err.detail, err.expires_at)
            except TimeoutError:
                await self._close_engine()
                return _Lost(Cause.NETWORK, f"connect timed out after {CONNECT_TIMEOUT:g}s")
            except (EngineError, OSError) as err:
                await self._close_engine()
                return _Lost(Cause.NETWORK, f"{err.__class__.__name__}: {err}")
        lost = await self._lost
        if lost.cause in (Cause.SHUTDOWN, Cause.LEASE_LOST, Cause.PAUSED) or self._requests:
            # We are the ones ending it: close without a lost-connection classification.
            with contextlib.suppress(EngineError, OSError):
                await engine.disconnect()
            await self.pipeline.disconnected()
            return None
        await self.pipeline.disconnected()
        return lost

    async def _on_event(self, ev: EngineEvent) -> None:
        try:
            await self._dispatch(ev)
        except Exception:
            self.log.exception("handling engine event failed", event=type(ev).__name__)

    async def _dispatch(self, ev: EngineEvent) -> None:
        now = self.clock.now()
        if isinstance(ev, IncomingMessage):
            self.pipeline.on_incoming(ev)
        elif isinstance(ev, Receipt):
            self.pipeline.on_receipt(ev)
        elif isinstance(ev, QrCode):
            await self._transition(
                SessionState.QR_READY,
                kind="qr",
                last_qr=ev.code,
                last_qr_at=now,
                qr_expires_at=ev.expires_at,
            )
        elif isinstance(ev, PairSuccess):
            await self._record("paired", detail=f"linked to {ev.phone}", phone=ev.phone, jid=ev.jid)
        elif isinstance(ev, PairCode):
            await self._record("pair_code", detail="pairing code issued", pair_code=ev.code)
        elif isinstance(ev, Connected):
            self.reconnect.reset()
            await self._transition(
                SessionState.CONNECTED,
                phone=ev.phone,
                jid=ev.jid or None,
                connected_since=now,
                last_seen_at=now,
                last_qr=None,
                qr_expires_at=None,
                pair_code=None,
                reconnect_active=False,
                reconnect_attempt=0,
                next_retry_at=None,
                ban_expires_at=None,
            )
            await self._load_config()
            assert self.engine is not None
            self.pipeline.connected(self.engine)
        elif isinstance(ev, KeepAliveTimeout):
            await self._record("keepalive_timeout", detail="pings unanswered")
        elif isinstance(ev, KeepAliveRestored):
            await self._record("keepalive_restored")
        elif isinstance(ev, ConnectionLost):
            if self._lost is not None and not self._lost.done():
                expires = ev.expires_at if isinstance(ev, TemporaryBan) else None
                self._lost.set_result(_Lost(ev.cause, ev.detail, expires))

    # ------------------------------------------------------------------ classification
    async def _handle_lost(self, lost: _Lost) -> None:
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
            await self._close_engine()
        await self._transition(
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
        await self._disconnect_engine()
        self.reconnect.reset()
        self._not_before = None
        self._parked = False
        reset: dict[str, Any] = {
            "reconnect_active": False,
            "reconnect_attempt": 0,
            "next_retry_at": None,
            "ban_expires_at": None,
            "last_qr": None,
            "qr_expires_at": None,
            "connected_since": None,
        }
        active = {"status": TenantStatus.ACTIVE.value, "error_message": None}
        if req is Request.RESTART:
            await self._transition(
                SessionState.DISCONNECTED, kind="restart", tenant=active, **reset
            )
        elif req is Request.RELINK:
            await self.credentials.wipe()
            await self._close_engine()
            await self._transition(
                SessionState.DISCONNECTED, kind="relink", tenant=active, phone=None, **reset
            )
        elif req is Request.LOGOUT:
            if self.engine is not None:
                with contextlib.suppress(EngineError, OSError):
                    await self.engine.logout()
            await self.credentials.wipe()
            await self._close_engine()
            self._parked = True
            await self._transition(
                SessionState.LOGGED_OUT,
                kind="logout",
                cause=Cause.LOGGED_OUT,
                detail="logged out by request",
                last_disconnect_cause=Cause.LOGGED_OUT.value,
                last_disconnect_action=Action.NEEDS_LINK.value,
                last_disconnect_at=self.clock.now(),
                last_disconnect_detail="logged out by request",
                **reset,
            )

    async def _disconnect_engine(self) -> None:
        if self.engine is not None:
            with contextlib.suppress(EngineError, OSError):
                await self.engine.disconnect()
        await self.pipeline.disconnected()

    async def _close_engine(self) -> None:
        engine, self.engine = self.engine, None
        self.pipeline.ack_engine = None
        if engine is not None:
            with contextlib.suppress(EngineError, OSError):
                await engine.close()

    async def _shutdown(self) -> None:
        cause = self._stop_cause or Cause.SHUTDOWN
        fenced = self.lease_lost or cause is Cause.LEASE_LOST
        if fenced:
            # Someone else may own the tenant now: let go of WhatsApp before anything else.
            await self._disconnect_engine()
        try:
            await asyncio.wait_for(self.pipeline.stop(), 2.0 if fenced else 15.0)
        except (TimeoutError, SQLAlchemyError, OSError) as err:
            self.log.warning("pipeline did not stop cleanly", error=repr(err)[:200])
        await self._disconnect_engine()
        await self._close_engine()
        if self.lease_lost or cause is Cause.LEASE_LOST:
            return  # another worker owns the tenant now: write nothing
        if self.state in (SessionState.LOGGED_OUT, SessionState.DISCONNECTED) and cause in (
            Cause.SHUTDOWN,
        ):
            return
        with contextlib.suppress(Exception):
            await self._transition(
                SessionState.DISCONNECTED
                if self.state is not SessionState.LOGGED_OUT
                else self.state,
                kind="stop",
                cause=cause,
                detail=f"stopped ({cause.value})",
                last_disconnect_cause=cause.value,
                last_disconnect_action=action_for(cause).value,
                last_disconnect_at=self.clock.now(),
                last_disconnect_detail=None,
                connected_since=None,
                reconnect_active=False,
                next_retry_at=None,
                last_qr=None,
                qr_expires_at=None,
            )

    # ------------------------------------------------------------------ persistence
    @property
    def state(self) -> SessionState:
        return self.session.state

    async def _transition(self, to: SessionState, **kw: Any) -> None:
        await self.session.transition(to, **kw)

    async def _record(self, kind: str, *, detail: str | None = None, **fields: Any) -> None:
        await self.session.record(kind, detail=detail, **fields)


def _log_task_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        get_logger("wafleet.bot").error(
            "background task failed", task=task.get_name(), error=repr(task.exception())
        )
