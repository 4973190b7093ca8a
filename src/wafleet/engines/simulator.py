"""`SimulatorEngine`: the `Engine` protocol over the simulator's WebSocket protocol.

One `Link` per connection. All events of a link are emitted from its receive task, in
order, so the sink never runs concurrently for one engine; the keepalive task only marks
the link dead and aborts the socket, and the receive task reports it (`KeepAliveTimeout`
then `ConnectionLost(keepalive_timeout)`). A link that ends by itself emits exactly one
`ConnectionLost`-family event; `disconnect()`, `logout()` and `close()` end it silently.
Wire protocol: `wafleet.simulator.protocol`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, ClassVar

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from wafleet.engines.base import (
    Connected,
    ConnectFailed,
    ConnectionLost,
    EngineContext,
    EngineError,
    EngineEvent,
    KeepAliveTimeout,
    NotConnected,
    OutgoingText,
    PairSuccess,
    QrCode,
)
from wafleet.logging import get_logger
from wafleet.simulator import protocol as p
from wafleet.simulator.client_link import (
    Link,
    close_event,
    incoming_message,
    receipt,
    retrieve,
)
from wafleet.states import Cause

_LOGIN_FAILURES: dict[str, Cause] = {
    p.LOGGED_OUT: Cause.LOGGED_OUT,
    p.TEMP_BANNED: Cause.TEMP_BANNED,
    p.CLIENT_OUTDATED: Cause.CLIENT_OUTDATED,
}
CLOSE_TIMEOUT = 2.0


class SimulatorEngine:
    name: ClassVar[str] = "simulator"

    def __init__(
        self,
        ctx: EngineContext,
        *,
        url: str,
        keepalive_interval: float,
        keepalive_timeout: float,
        connect_timeout: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ctx = ctx
        self.url = url
        self.keepalive_interval = keepalive_interval
        self.keepalive_timeout = keepalive_timeout
        # A blackholed server accepts and never answers: give up like keepalive would.
        self.connect_timeout = connect_timeout or min(
            30.0, max(5.0, keepalive_interval + keepalive_timeout)
        )
        self._sleep = sleep
        self._clock = clock
        self._link: Link | None = None
        self._links = 0
        self._closed = False
        self._log = get_logger("wafleet.engines.simulator", tenant=ctx.tenant_slug)

    # ------------------------------------------------------------------ Engine API

    @property
    def connected(self) -> bool:
        link = self._link
        return link is not None and link.logged_in and not link.finished

    async def connect(self) -> None:
        if self._closed:
            raise EngineError("the engine is closed")
        if self._link is not None and not self._link.finished:
            raise EngineError("already connected: disconnect() first")
        token = await self._token()
        ws = await self._open(token)
        try:
            hello = {"type": "hello", "creds": token, "version": p.CLIENT_VERSION}
            try:
                await ws.send(p.encode(hello))
            except ConnectionClosed as err:
                raise ConnectFailed(Cause.NETWORK, f"connection closed at login ({err})") from None
            first = await self._first_frame(ws)
        except BaseException:
            await self._close_ws(ws)
            raise
        kind = first["type"]
        if kind == "login_failed":
            await self._close_ws(ws)
            reason = str(first.get("reason"))
            raise ConnectFailed(
                _LOGIN_FAILURES.get(reason, Cause.AUTH_FAILURE),
                str(first.get("detail") or reason),
                p.parse_iso(first.get("expires_at")),
            )
        if kind not in ("connected", "qr"):
            await self._close_ws(ws)
            raise ConnectFailed(Cause.STREAM_ERROR, f"unexpected first frame {kind!r}")
        self._links += 1
        link = Link(ws, self._links)
        if kind == "connected":
            link.logged_in = True
            link.phone = str(first.get("phone") or "")
            link.jid = str(first.get("jid") or "")
        self._link = link
        n = link.number
        link.tasks = [
            self._spawn(self._receive_loop(link, first), f"sim-engine-recv-{n}"),
            self._spawn(link.write_loop(), f"sim-engine-write-{n}"),
            self._spawn(self._keepalive_loop(link), f"sim-engine-keepalive-{n}"),
        ]

    async def disconnect(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.by_us = True
            await self._teardown(link)

    async def logout(self) -> None:
        """Unlink the device (online, or with a short offline connection) and wipe creds."""
        link = self._link
        if link is not None and link.logged_in and not link.finished:
            link.by_us = True
            link.enqueue({"type": "logout"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(link.ended.wait(), self.connect_timeout)
            await self.disconnect()
        else:
            await self.disconnect()
            token = await self._token(strict=False)
            if token:
                try:
                    await self._unlink_offline(token)
                except (ConnectFailed, ConnectionClosed, OSError, TimeoutError) as err:
                    self._log.warning(
                        "simulator logout: could not reach the server", error=str(err)
                    )
        await self.ctx.credentials.wipe()

    async def send_text(self, to: str, text: str, message_id: str) -> None:
        link = self._link
        if link is None or not link.logged_in or link.finished:
            raise NotConnected("not logged in")
        await asyncio.shield(link.send(to, text, message_id))

    async def send_many(self, messages: Sequence[OutgoingText]) -> list[EngineError | None]:
        link = self._link
        if link is None or not link.logged_in or link.finished:
            return [NotConnected("not logged in")] * len(messages)
        # All frames queued now, in order, then one wait for every answer: no task and
        # no round trip per message (the outbox's hot path).
        futs = [link.send(*m) for m in messages]
        if futs:
            await asyncio.wait(futs)
        out: list[EngineError | None] = []
        for fut in futs:
            err = fut.exception()
            if err is not None and not isinstance(err, EngineError):
                raise err
            out.append(err)
        return out

    async def ack(self, message_id: str) -> None:
        link = self._link
        if link is None or link.finished:
            return  # unacked messages are redelivered on the next connection: harmless
        link.ack(message_id)

    async def pair_phone(self, phone: str) -> str:
        link = self._link
        if link is None or link.logged_in or link.finished:
            raise NotConnected("pairing by phone needs a connection waiting for a QR scan")
        if link.pair_code is None or link.pair_code.done():
            link.pair_code = asyncio.get_running_loop().create_future()
            link.pair_code.add_done_callback(retrieve)
        link.enqueue({"type": "pair_phone", "phone": phone})
        try:
            return await asyncio.wait_for(asyncio.shield(link.pair_code), self.connect_timeout)
        except TimeoutError:
            raise EngineError("the simulator did not answer the pairing request") from None

    async def close(self) -> None:
        self._closed = True
        await self.disconnect()

    # ------------------------------------------------------------------ connection

    async def _token(self, *, strict: bool = True) -> str | None:
        raw = await self.ctx.credentials.load()
        if not raw:
            return None
        try:
            data = json.loads(raw)
            token = data["token"]
            if not isinstance(token, str) or not token:
                raise ValueError("empty token")
            return token
        except (ValueError, KeyError, TypeError):
            if strict:
                raise ConnectFailed(
                    Cause.AUTH_FAILURE, "stored credentials are unreadable; re-link"
                ) from None
            return None

    async def _open(self, token: str | None) -> ClientConnection:
        headers = {p.CREDENTIALS_HEADER: token} if token else None
        try:
            return await websockets.connect(
                self.url,
                additional_headers=headers,
                compression=None,
                ping_interval=None,  # keepalive is ours (application frames)
                open_timeout=self.connect_timeout,
                close_timeout=CLOSE_TIMEOUT,
                max_size=None,
                max_queue=64,
                proxy=None,
            )
        except InvalidStatus as err:
            status = err.response.status_code
            raise ConnectFailed(Cause.NETWORK, f"connection refused (HTTP {status})") from None
        except (OSError, TimeoutError, WebSocketException) as err:
            raise ConnectFailed(Cause.NETWORK, f"cannot connect: {err!r}") from None

    async def _first_frame(self, ws: ClientConnection) -> dict[str, Any]:
        try:
            raw = await asyncio.wait_for(ws.recv(), self.connect_timeout)
        except TimeoutError:
            raise ConnectFailed(Cause.NETWORK, "the server did not answer the login") from None
        except ConnectionClosed as err:
            raise ConnectFailed(Cause.NETWORK, f"connection closed during login ({err})") from None
        frame = p.decode(raw)
        if frame is None:
            raise ConnectFailed(Cause.STREAM_ERROR, "unreadable frame during login")
        return frame

    async def _unlink_offline(self, token: str) -> None:
        ws = await self._open(token)
        try:
            await ws.send(p.encode({"type": "unlink", "creds": token}))
            await asyncio.wait_for(ws.recv(), self.connect_timeout)
        finally:
            await self._close_ws(ws)

    async def _close_ws(self, ws: ClientConnection) -> None:
        try:
            await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT + 1)
        except (TimeoutError, OSError, WebSocketException):
            transport = getattr(ws, "transport", None)
            if transport is not None:
                transport.abort()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return asyncio.create_task(coro, name=f"{name}-{self.ctx.tenant_slug}")

    async def _teardown(self, link: Link) -> None:
        """End ``link`` (idempotent): tasks cancelled and reaped, socket closed."""
        if not link.finished:
            link.finished = True
            link.fail_waiters("the connection ended before the server confirmed")
        if self._link is link:
            self._link = None
        current = asyncio.current_task()
        others = [t for t in link.tasks if t is not current and not t.done()]
        for t in others:
            t.cancel()
        for t in others:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self._close_ws(link.ws)
        link.ended.set()

    async def _end(self, link: Link, event: ConnectionLost) -> None:
        """The link ended by itself: tear it down, then emit its one ``event``."""
        if link.finished:
            return
        by_us = link.by_us
        await self._teardown(link)
        if not by_us:
            await self._emit(event)

    async def _emit(self, event: EngineEvent) -> None:
        try:
            await self.ctx.sink(event)
        except Exception:
            # The bot's handler failed; the connection itself is fine, keep serving it.
            self._log.exception("event handler failed", event=type(event).__name__)

    # ------------------------------------------------------------------ tasks

    async def _keepalive_loop(self, link: Link) -> None:
        n = 0
        while not link.finished:
            await self._sleep(self.keepalive_interval)
            n += 1
            link.pong.clear()
            link.enqueue({"type": "ping", "id": n})
            pong = asyncio.ensure_future(link.pong.wait())
            timer = asyncio.ensure_future(self._sleep(self.keepalive_timeout))
            try:
                await asyncio.wait({pong, timer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                pong.cancel()
                timer.cancel()
            if not link.pong.is_set():
                # The receive task reports it; aborting wakes it even if nothing arrives.
                link.lost = Cause.KEEPALIVE_TIMEOUT
                link.abort()
                return

    async def _receive_loop(self, link: Link, first: dict[str, Any]) -> None:
        event: ConnectionLost
        try:
            if await self._handle(link, first):
                return
            async for raw in link.ws:
                frame = p.decode(raw)
                if frame is not None and await self._handle(link, frame):
                    return
                if link.finished:
                    return
            event = ConnectionLost(cause=Cause.NETWORK, detail="the server closed the socket")
        except ConnectionClosed as err:
            event = ConnectionLost(cause=Cause.NETWORK, detail=f"connection dropped ({err})")
        except OSError as err:
            event = ConnectionLost(cause=Cause.NETWORK, detail=f"socket error: {err!r}")
        if link.lost is Cause.KEEPALIVE_TIMEOUT:
            if link.finished or link.by_us:
                return
            await self._emit(KeepAliveTimeout())
            event = ConnectionLost(
                cause=Cause.KEEPALIVE_TIMEOUT,
                detail=f"no pong within {self.keepalive_timeout}s",
            )
        await self._end(link, event)

    async def _handle(self, link: Link, frame: dict[str, Any]) -> bool:
        """Process one frame; True when the link is over."""
        kind = frame["type"]
        if kind == "messages":
            for item in frame.get("items") or ():
                if link.finished:  # disconnect() from inside the sink: stop delivering
                    return True
                await self._emit(incoming_message(item))
        elif kind == "receipts":
            for item in frame.get("items") or ():
                if link.finished:
                    return True
                await self._emit(receipt(item))
        elif kind == "sent":
            link.sent(str(frame.get("id")))
        elif kind == "pong":
            link.pong.set()
        elif kind == "connected":
            await self._emit(Connected(phone=link.phone, jid=link.jid))
        elif kind == "qr":
            await self._emit(
                QrCode(code=str(frame["code"]), expires_at=p.parse_iso(frame.get("expires_at")))
            )
        elif kind == "pair_code":
            if link.pair_code is not None and not link.pair_code.done():
                link.pair_code.set_result(str(frame.get("code")))
        elif kind == "pair_success":
            creds = {"token": frame["creds"], "phone": frame.get("phone"), "jid": frame.get("jid")}
            # Persisted before anyone hears of the pairing: the next connect logs in with it.
            await self.ctx.credentials.save(json.dumps(creds).encode())
            await self._emit(
                PairSuccess(phone=str(frame.get("phone")), jid=str(frame.get("jid") or ""))
            )
        elif kind == "close":
            await self._end(link, close_event(frame))
            return True
        return False
