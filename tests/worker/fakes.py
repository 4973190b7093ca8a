"""A scriptable in-memory engine for TenantBot unit tests (the e2e tests use the real
simulator). It follows the Engine contract of wafleet.engines.base."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import ClassVar

from wafleet.engines.base import (
    Connected,
    ConnectFailed,
    ConnectionLost,
    EngineContext,
    EngineError,
    EngineEvent,
    IncomingMessage,
    NotConnected,
    OutgoingText,
    QrCode,
    send_in_order,
)
from wafleet.states import Cause


class FakeEngine:
    name: ClassVar[str] = "fake"

    def __init__(self, ctx: EngineContext, world: FakeWorld) -> None:
        self.ctx = ctx
        self.world = world
        self.connected = False
        self.closed = False

    async def connect(self) -> None:
        self.world.connects += 1
        self.world.in_flight += 1
        self.world.max_in_flight = max(self.world.max_in_flight, self.world.in_flight)
        try:
            await asyncio.sleep(0)
            if self.world.fail_next:
                cause = self.world.fail_next.pop(0)
                raise ConnectFailed(cause, "scripted failure")
            creds = await self.ctx.credentials.load()
            if creds is None:
                await self.ctx.sink(QrCode("QR-1"))
                self.world.engine = self
                return
            self.connected = True
            self.world.engine = self
            await self.ctx.sink(Connected(phone=creds.decode()))
            for m in list(self.world.undelivered):
                await self.ctx.sink(m)
        finally:
            self.world.in_flight -= 1

    async def emit(self, ev: EngineEvent) -> None:
        if isinstance(ev, ConnectionLost):
            self.connected = False
        await self.ctx.sink(ev)

    async def disconnect(self) -> None:
        self.connected = False

    async def logout(self) -> None:
        self.connected = False
        await self.ctx.credentials.wipe()

    async def send_text(self, to: str, text: str, message_id: str) -> None:
        if not self.connected:
            raise NotConnected("not connected")
        self.world.send_calls.append(message_id)
        if message_id in self.world.fail_send_once:
            self.world.fail_send_once.discard(message_id)
            raise EngineError("scripted send failure")
        if message_id not in self.world.sent_ids:
            self.world.sent_ids.add(message_id)
            self.world.sent.append((to, text, message_id))

    async def send_many(self, messages: Sequence[OutgoingText]) -> list[EngineError | None]:
        # one by one, stopping at a failure, like an engine whose sends can fail alone
        return await send_in_order(self.send_text, messages)

    async def ack(self, message_id: str) -> None:
        self.world.acked.add(message_id)
        self.world.undelivered = [m for m in self.world.undelivered if m.id != message_id]

    async def pair_phone(self, phone: str) -> str:
        return "ABCD-EFGH"

    async def close(self) -> None:
        self.closed = True
        self.connected = False


class FakeWorld:
    """What WhatsApp would hold: delivered/acked messages, sent replies, connects."""

    def __init__(self) -> None:
        self.connects = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail_next: list[Cause] = []
        self.engine: FakeEngine | None = None
        self.sent: list[tuple[str, str, str]] = []
        self.sent_ids: set[str] = set()
        self.send_calls: list[str] = []  # every attempt, failed ones and repeats included
        self.fail_send_once: set[str] = set()
        self.acked: set[str] = set()
        self.undelivered: list[IncomingMessage] = []
        self._n = 0

    def factory(self) -> Callable[[EngineContext], FakeEngine]:
        return lambda ctx: FakeEngine(ctx, self)

    def message(self, chat: str, text: str) -> IncomingMessage:
        self._n += 1
        m = IncomingMessage(f"M{self._n}", chat, chat, text, datetime.now(UTC))
        self.undelivered.append(m)
        return m
