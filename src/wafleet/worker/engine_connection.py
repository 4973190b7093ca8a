"""EngineConnection: a TenantBot's Engine and the connection it currently holds.

The bot decides when to connect and what to do once a connection has ended; this class
does what lies in between. It creates the tenant's Engine on first use, connects it under
the worker-wide connect limiter (bounded by ``CONNECT_TIMEOUT``, abandoned at once when
the bot stops or a user request arrives), turns the engine's events into session changes
and pipeline calls, and reports how the connection ended (`Lost`), whoever ended it: the
engine (``ConnectionLost``) or the bot (stop, request, lost lease: `end`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

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
from wafleet.states import Cause, SessionState
from wafleet.worker.clock import Clock
from wafleet.worker.pipeline import TenantPipeline
from wafleet.worker.reconnect import ReconnectManager
from wafleet.worker.session_recorder import SessionRecorder

CONNECT_TIMEOUT = 45.0
EngineFactory = Callable[[EngineContext], Engine]


@dataclass
class Lost:
    """How a connection ended (or why it could not be made)."""

    cause: Cause
    detail: str = ""
    expires_at: datetime | None = None


class ConnectAbandoned(Exception):
    """The bot stopped, or a user request arrived, before the connection was up."""


class EngineConnection:
    def __init__(
        self,
        *,
        slug: str,
        session_dir: Path,
        credentials: CredentialStore,
        engine_factory: EngineFactory,
        connect_limiter: asyncio.Semaphore,
        session: SessionRecorder,
        pipeline: TenantPipeline,
        reconnect: ReconnectManager,
        clock: Clock,
        load_config: Callable[[], Awaitable[None]],
        log: Any,
    ) -> None:
        self.slug = slug
        self.session_dir = session_dir
        self.credentials = credentials
        self.engine_factory = engine_factory
        self.connect_limiter = connect_limiter
        self.session = session
        self.pipeline = pipeline
        self.reconnect = reconnect
        self.clock = clock
        self.load_config = load_config
        self.log = log
        self.engine: Engine | None = None
        self._lost: asyncio.Future[Lost] | None = None

    # ------------------------------------------------------------------ connecting
    def _ensure_engine(self) -> Engine:
        if self.engine is None:
            ctx = EngineContext(
                tenant_slug=self.slug,
                session_dir=self.session_dir,
                credentials=self.credentials,
                sink=self._on_event,
            )
            self.engine = self.engine_factory(ctx)
            self.pipeline.ack_engine = self.engine
        return self.engine

    async def connect(self, abandon: Callable[[], bool]) -> Lost | None:
        """Connect: None once connected (then wait for `ended`), or the `Lost` to classify
        when it failed. Raises `ConnectAbandoned` when ``abandon()`` turns true first."""
        engine = self._ensure_engine()
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        await self.session.transition(SessionState.CONNECTING)
        async with self.connect_limiter:
            if abandon():
                raise ConnectAbandoned
            connecting = asyncio.create_task(
                asyncio.wait_for(engine.connect(), CONNECT_TIMEOUT), name=f"connect:{self.slug}"
            )
            either: list[asyncio.Future[Any]] = [connecting, self._lost]
            try:
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not connecting.done() and (abandon() or not self._lost.done()):
                    # Stop, lease loss or a user request while connecting: a dead server
                    # can leave connect() hanging for its whole timeout; don't wait it out.
                    connecting.cancel()
                    await asyncio.gather(connecting, return_exceptions=True)
            if connecting.cancelled():
                raise ConnectAbandoned
            try:
                await connecting
            except ConnectFailed as err:
                return Lost(err.cause, err.detail, err.expires_at)
            except TimeoutError:
                await self.close()
                return Lost(Cause.NETWORK, f"connect timed out after {CONNECT_TIMEOUT:g}s")
            except (EngineError, OSError) as err:
                await self.close()
                return Lost(Cause.NETWORK, f"{err.__class__.__name__}: {err}")
        return None

    def end(self, lost: Lost) -> None:
        """Report how the current connection ends (the first report wins)."""
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(lost)

    async def ended(self) -> Lost:
        """Wait until the connection `connect` made has ended."""
        assert self._lost is not None
        return await self._lost

    async def disconnect(self) -> None:
        """Disconnect the engine (if any); the pipeline stops sending."""
        if self.engine is not None:
            with contextlib.suppress(EngineError, OSError):
                await self.engine.disconnect()
        await self.pipeline.disconnected()

    async def logout(self) -> None:
        if self.engine is not None:
            with contextlib.suppress(EngineError, OSError):
                await self.engine.logout()

    async def close(self) -> None:
        engine, self.engine = self.engine, None
        self.pipeline.ack_engine = None
        if engine is not None:
            with contextlib.suppress(EngineError, OSError):
                await engine.close()

    async def pair_phone(self, phone: str) -> None:
        """Pairing by phone number instead of QR: ask the engine for the code to type on
        the phone, and publish it on the session row (``pair_code``)."""
        engine = self.engine
        if engine is None or self.session.state is not SessionState.QR_READY:
            await self.session.record(
                "pair_code_refused",
                detail="pairing by phone needs a session waiting for a link"
                f" (now {self.session.state})",
            )
            return
        try:
            code = await engine.pair_phone(phone)
        except (EngineError, OSError) as err:
            await self.session.record(
                "pair_code_refused", detail=f"{err.__class__.__name__}: {err}"
            )
            return
        await self.session.record(
            "pair_code", detail=f"pairing code issued for {phone}", pair_code=code
        )

    # ------------------------------------------------------------------ engine events
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
            await self.session.transition(
                SessionState.QR_READY,
                kind="qr",
                last_qr=ev.code,
                last_qr_at=now,
                qr_expires_at=ev.expires_at,
            )
        elif isinstance(ev, PairSuccess):
            await self.session.record(
                "paired", detail=f"linked to {ev.phone}", phone=ev.phone, jid=ev.jid
            )
        elif isinstance(ev, PairCode):
            await self.session.record("pair_code", detail="pairing code issued", pair_code=ev.code)
        elif isinstance(ev, Connected):
            self.reconnect.reset()
            await self.session.transition(
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
            await self.load_config()
            assert self.engine is not None
            self.pipeline.connected(self.engine)
        elif isinstance(ev, KeepAliveTimeout):
            await self.session.record("keepalive_timeout", detail="pings unanswered")
        elif isinstance(ev, KeepAliveRestored):
            await self.session.record("keepalive_restored")
        elif isinstance(ev, ConnectionLost):
            expires = ev.expires_at if isinstance(ev, TemporaryBan) else None
            self.end(Lost(ev.cause, ev.detail, expires))
