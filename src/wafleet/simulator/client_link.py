"""The engine side of one simulator WebSocket (used by `wafleet.engines.simulator`):
per-connection state, the batching writer, and the frame → typed event mapping."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from wafleet.engines.base import (
    ClientOutdated,
    ConnectionLost,
    IncomingMessage,
    LoggedOut,
    NotConnected,
    QrTimeout,
    Receipt,
    Replaced,
    TemporaryBan,
)
from wafleet.simulator import protocol as p
from wafleet.states import Cause


def incoming_message(item: dict[str, Any]) -> IncomingMessage:
    """The event for one item of a ``messages`` frame."""
    return IncomingMessage(
        id=str(item["id"]),
        chat=str(item["chat"]),
        sender=str(item["sender"]),
        text=str(item["text"]),
        at=p.parse_iso(item.get("at")) or datetime.now(UTC),
    )


def receipt(item: dict[str, Any]) -> Receipt:
    """The event for one item of a ``receipts`` frame."""
    return Receipt(
        message_id=str(item["id"]),
        status=str(item["status"]),
        at=p.parse_iso(item.get("at")) or datetime.now(UTC),
    )


def close_event(frame: dict[str, Any]) -> ConnectionLost:
    """The typed event for a server ``close`` frame."""
    reason = frame.get("reason")
    detail = str(frame.get("detail") or "")
    if reason == p.LOGGED_OUT:
        return LoggedOut(detail=detail)
    if reason == p.REPLACED:
        return Replaced(detail=detail)
    if reason == p.TEMP_BANNED:
        return TemporaryBan(detail=detail, expires_at=p.parse_iso(frame.get("expires_at")))
    if reason == p.CLIENT_OUTDATED:
        return ClientOutdated(detail=detail)
    if reason == p.QR_TIMEOUT:
        return QrTimeout(detail=detail)
    if reason == p.RESTART_REQUIRED:
        return ConnectionLost(cause=Cause.RESTART_REQUIRED, detail=detail)
    return ConnectionLost(cause=Cause.STREAM_ERROR, detail=f"server closed: {reason!r} {detail}")


class Link:
    """One WebSocket connection and everything that lives and dies with it."""

    def __init__(self, ws: ClientConnection, number: int) -> None:
        self.ws = ws
        self.number = number
        self.logged_in = False
        self.phone = ""
        self.jid = ""
        self.finished = False  # the link ended (event emitted, or ended by us)
        self.by_us = False  # ended by disconnect()/logout(): emit nothing
        self.lost: Cause | None = None  # set by keepalive before aborting the socket
        self.ended = asyncio.Event()
        self.waiters: dict[str, asyncio.Future[None]] = {}
        self.pair_code: asyncio.Future[str] | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.pong = asyncio.Event()
        self._frames: list[str] = []
        self._acks: list[str] = []
        self._wake = asyncio.Event()

    def enqueue(self, frame: dict[str, Any]) -> None:
        self._frames.append(p.encode(frame))
        self._wake.set()

    def send(self, to: str, text: str, message_id: str) -> asyncio.Future[None]:
        """Queue a ``send`` frame; the future resolves on the server's ``sent``. A message
        id already in flight shares its future (and is not sent twice)."""
        fut = self.waiters.get(message_id)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            fut.add_done_callback(retrieve)
            self.waiters[message_id] = fut
            self.enqueue({"type": "send", "id": message_id, "to": to, "text": text})
        return fut

    def sent(self, message_id: str) -> None:
        fut = self.waiters.pop(message_id, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def ack(self, message_id: str) -> None:
        # Batched: one ``ack`` frame per writer wake-up carries every id queued so far.
        self._acks.append(message_id)
        self._wake.set()

    async def write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            frames, self._frames = self._frames, []
            if self._acks:
                frames.append(p.encode({"type": "ack", "ids": self._acks}))
                self._acks = []
            try:
                for text in frames:
                    await self.ws.send(text)
            except ConnectionClosed:
                # The receive loop sees the same close and reports it; queued frames die
                # with the connection (their waiters fail when the link is torn down).
                return

    def abort(self) -> None:
        transport = getattr(self.ws, "transport", None)
        if transport is not None:
            transport.abort()

    def fail_waiters(self, reason: str) -> None:
        for fut in self.waiters.values():
            if not fut.done():
                fut.set_exception(NotConnected(reason))
        self.waiters.clear()
        if self.pair_code is not None and not self.pair_code.done():
            self.pair_code.set_exception(NotConnected(reason))


def retrieve(fut: asyncio.Future[Any]) -> None:
    # A waiter whose caller was cancelled must not log "exception never retrieved".
    if not fut.cancelled():
        fut.exception()
