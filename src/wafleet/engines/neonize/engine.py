"""`NeonizeEngine`: real WhatsApp through neonize, isolated in an engine child process.

One child process per connection attempt of one tenant (see docs/NEONIZE.md for the
measurements behind that choice). ``connect()`` starts a fresh child and asks it to
connect; when the connection ends — by itself, by ``disconnect()``, or because the child
crashed or hung — the child is retired, and the next ``connect()`` starts a new one. That
absorbs neonize's sharp edges: a failed first connect that leaks a database handle and is
never retried, Go-side state that cannot be trusted after a failure, a hung dial that
blocks ``stop()`` for a minute or more (we kill the process instead), and fatal Go errors
(exit 134) that take down only this tenant's child.

Timers are ours, with an injected clock: the QR expiry (`QrSchedule`), a keepalive
deadline after whatsmeow reports a missed keepalive, and a liveness ping of the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from wafleet.config import Settings
from wafleet.engines.base import (
    Connected,
    ConnectFailed,
    ConnectionLost,
    EngineContext,
    EngineError,
    EngineEvent,
    KeepAliveRestored,
    KeepAliveTimeout,
    NotConnected,
    OutgoingText,
    PairSuccess,
    QrCode,
    QrTimeout,
    send_in_order,
)
from wafleet.engines.neonize import store
from wafleet.engines.neonize.connection import (
    Connection,
    cause_from_wire,
    log_child_record,
    when_from_wire,
)
from wafleet.engines.neonize.process import (
    ChildDied,
    ChildExit,
    ChildHung,
    ChildProcess,
    ChildRequestFailed,
)
from wafleet.engines.neonize.protocol import ProtocolError, decode_event
from wafleet.logging import get_logger
from wafleet.states import Cause

CONNECT_TIMEOUT = 30.0  # a dial that has not finished by then is hung: kill the child
REQUEST_TIMEOUT = 30.0
PING_INTERVAL = 15.0
PING_TIMEOUT = 10.0
STOP_GRACE = 2.0

ChildFactory = Callable[[], ChildProcess]


class NeonizeEngine:
    name: ClassVar[str] = "neonize"

    def __init__(
        self,
        ctx: EngineContext,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        connect_timeout: float | None = None,
        ping_interval: float | None = PING_INTERVAL,
        request_timeout: float = REQUEST_TIMEOUT,
        child_factory: ChildFactory | None = None,
    ) -> None:
        self.ctx = ctx
        self.settings = settings
        self._clock = clock
        self._sleep = sleep
        self._now = now
        extra = ctx.extra
        self.connect_timeout = float(
            connect_timeout or extra.get("neonize_connect_timeout") or CONNECT_TIMEOUT  # type: ignore[arg-type]
        )
        # A SOCKS/HTTP proxy for the WhatsApp connection (also how tests make a dial hang).
        self.proxy = str(extra["neonize_proxy"]) if extra.get("neonize_proxy") else None
        self.ping_interval = ping_interval
        self.request_timeout = request_timeout
        self._factory = child_factory or (
            lambda: ChildProcess(ctx.tenant_slug, log_level=settings.log_level)
        )
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.log = get_logger("wafleet.engines.neonize", tenant=ctx.tenant_slug)

    # ------------------------------------------------------------------ Engine protocol
    @property
    def child_pid(self) -> int | None:
        conn = self._conn
        return conn.child.pid if conn is not None and conn.child.alive else None

    async def connect(self) -> None:
        async with self._lock:
            if self._closed:
                raise EngineError("engine is closed")
            await self._retire()
            db = store.database_name(self.settings, self.ctx.session_dir)
            child = self._factory()
            try:
                await child.start()
            except (ChildDied, ChildHung, OSError) as err:
                await child.kill()
                raise ConnectFailed(
                    Cause.ENGINE_CRASH, f"engine process failed to start: {err}"
                ) from None
            conn = self._conn = Connection(child)
            conn.pump = self._spawn(self._pump(conn), f"neonize-pump:{self.ctx.tenant_slug}")
            args: dict[str, object] = {"db": db, "uuid": self.ctx.tenant_slug, "proxy": self.proxy}
            if self.settings.is_postgres:
                # shared device store: resume by our own JID, or pair a new device
                jid = store.resume_jid(await self.ctx.credentials.load())
                args["jid"] = jid
                args["new_device"] = jid is None
            try:
                result = await child.request("connect", args, timeout=self.connect_timeout)
            except ChildHung:
                await self._fail(conn, kill=True)
                raise ConnectFailed(
                    Cause.NETWORK,
                    f"connect did not finish within {self.connect_timeout:g}s (hung dial); "
                    "engine process killed",
                ) from None
            except ChildDied:
                await self._fail(conn, kill=True)
                raise ConnectFailed(Cause.ENGINE_CRASH, child.exit_detail()) from None
            except ChildRequestFailed as err:
                await self._fail(conn, kill=False)
                raise ConnectFailed(
                    cause_from_wire(err.cause), err.message, when_from_wire(err.expires_at)
                ) from None
            except BaseException:
                await self._fail(conn, kill=True)
                raise
            conn.phase = conn.LIVE
            conn.settled.set()
            state = result.get("state") if isinstance(result, dict) else None
            self.log.info("neonize connected", state=state, pid=child.pid)
            if self.ping_interval:
                self._watch(conn, "ping", self._ping_loop(conn))

    async def disconnect(self) -> None:
        async with self._lock:
            await self._retire()

    async def logout(self) -> None:
        conn = self._conn
        if conn is None or conn.phase != conn.LIVE:
            self.log.warning("logout without a live connection: only local credentials go")
        else:
            try:
                await conn.child.request("logout", timeout=self.request_timeout)
            except (ChildRequestFailed, ChildHung, ChildDied) as err:
                self.log.warning("logout request failed", error=str(err))
        await self.disconnect()

    async def send_text(self, to: str, text: str, message_id: str) -> None:
        conn = self._live_conn()
        if not conn.logged_in:
            raise NotConnected("not logged in to WhatsApp yet")
        args = {"to": to, "text": text, "message_id": message_id}
        await self._call(conn, "send_text", args)

    async def send_many(self, messages: Sequence[OutgoingText]) -> list[EngineError | None]:
        # One at a time: the child runs its requests one by one, and each request's
        # timeout starts when it is written — a whole window in flight would time out
        # its tail (and have a healthy child killed as hung).
        return await send_in_order(self.send_text, messages)

    async def ack(self, message_id: str) -> None:
        # whatsmeow acknowledges messages itself (delivery receipts on decryption);
        # neonize exposes no hook to defer that until we have stored the message.
        del message_id

    async def pair_phone(self, phone: str) -> str:
        conn = self._live_conn()
        if conn.logged_in:
            raise EngineError("already linked: pairing by phone needs a QR-waiting connection")
        result = await self._call(conn, "pair_phone", {"phone": phone})
        return str(result["code"])

    async def close(self) -> None:
        if self._closed and not self._tasks:
            return
        self._closed = True
        async with self._lock:
            await self._retire()
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE + 3.0)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # ------------------------------------------------------------------ requests
    def _live_conn(self) -> Connection:
        conn = self._conn
        if conn is None or conn.phase != conn.LIVE or not conn.child.alive:
            raise NotConnected("not connected to WhatsApp")
        return conn

    async def _call(self, conn: Connection, op: str, args: dict[str, Any]) -> Any:
        try:
            return await conn.child.request(op, args, timeout=self.request_timeout)
        except ChildRequestFailed as err:
            if err.kind == "not_connected":
                raise NotConnected(err.message) from None
            raise EngineError(err.message) from None
        except ChildHung as err:
            lost = ConnectionLost(Cause.ENGINE_CRASH, f"engine process hung: {err}")
            await self._lose(conn, lost, kill=True)
            raise NotConnected(str(err)) from None
        except ChildDied as err:
            raise NotConnected(str(err)) from None  # the pump reports the crash

    # ------------------------------------------------------------------ child events
    async def _pump(self, conn: Connection) -> None:
        while True:
            item = await conn.child.queue.get()
            if isinstance(item, ChildExit):
                await conn.settled.wait()
                await self._lose(conn, ConnectionLost(Cause.ENGINE_CRASH, conn.child.exit_detail()))
                return
            if "log" in item:
                log_child_record(self.log, item["log"])
            elif "output" in item:
                self.log.info("engine process output", line=str(item["output"])[:2000])
            elif "event" in item:
                try:
                    ev = decode_event(item["event"])
                except ProtocolError as err:
                    self.log.warning("bad event from engine process", error=str(err))
                    continue
                await self._on_event(conn, ev)

    async def _on_event(self, conn: Connection, ev: EngineEvent) -> None:
        if isinstance(ev, ConnectionLost):
            await conn.settled.wait()
            if conn.qr_ran_out(self._clock()) and type(ev) is ConnectionLost:
                # whatsmeow closes the socket itself when its last code expires; that is
                # the QR timeout, not a network fault
                ev = QrTimeout(detail=f"no scan: {conn.qr.seen} QR code(s) expired")
            await self._lose(conn, ev)
            return
        if conn.phase == conn.ENDED:
            return
        if isinstance(ev, QrCode):
            ttl = conn.qr.on_code(self._clock())
            ev = QrCode(code=ev.code, expires_at=self._now() + timedelta(seconds=ttl))
            self._watch(conn, "qr", self._qr_watch(conn))
        elif isinstance(ev, (Connected, PairSuccess)):
            self._unwatch(conn, "qr")
            if isinstance(ev, Connected):
                conn.logged_in = True
                if ev.jid:
                    await self._save_credentials(ev)
        elif isinstance(ev, KeepAliveTimeout):
            if "keepalive" not in conn.watchers:
                self._watch(conn, "keepalive", self._keepalive_watch(conn))
        elif isinstance(ev, KeepAliveRestored):
            self._unwatch(conn, "keepalive")
        await self._emit(ev)

    async def _lose(self, conn: Connection, ev: ConnectionLost, *, kill: bool = False) -> None:
        """End a live connection with exactly one ConnectionLost, then retire its child
        (``kill``: at once — it is hung, nothing graceful will get through)."""
        await conn.settled.wait()  # a timer may fire before connect() has returned
        if conn.phase != conn.LIVE:
            return
        conn.phase = conn.ENDED
        if kill:
            conn.child.signal(signal.SIGKILL)
        for name in list(conn.watchers):
            self._unwatch(conn, name)
        self.log.info("neonize connection lost", cause=ev.cause.value, detail=ev.detail)
        await self._emit(ev)
        self._spawn(self._stop_child(conn, kill=kill), f"neonize-retire:{self.ctx.tenant_slug}")

    async def _emit(self, ev: EngineEvent) -> None:
        try:
            await self.ctx.sink(ev)
        except Exception:
            self.log.exception("engine event sink failed", event=type(ev).__name__)

    async def _save_credentials(self, ev: Connected) -> None:
        try:
            await self.ctx.credentials.save(store.credential_record(ev.jid, ev.phone))
        except Exception as err:  # the device store is neonize's; this is only a record
            self.log.warning("could not record the linked device", error=str(err))

    # ------------------------------------------------------------------ timers
    async def _qr_watch(self, conn: Connection) -> None:
        while True:
            deadline = conn.qr.deadline()
            if deadline is None:
                return
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            await self._sleep(remaining)
        conn.watchers.pop("qr", None)
        await self._lose(conn, QrTimeout(detail=f"no scan: {conn.qr.seen} QR code(s) expired"))

    async def _keepalive_watch(self, conn: Connection) -> None:
        wait = self.settings.keepalive_interval + self.settings.keepalive_timeout
        deadline = self._clock() + wait
        while (remaining := deadline - self._clock()) > 0:
            await self._sleep(remaining)
        conn.watchers.pop("keepalive", None)
        await self._lose(
            conn, ConnectionLost(Cause.KEEPALIVE_TIMEOUT, f"no keepalive answer for {wait:g}s")
        )

    async def _ping_loop(self, conn: Connection) -> None:
        interval = self.ping_interval or PING_INTERVAL
        while conn.phase == conn.LIVE:
            await self._sleep(interval)
            try:
                await conn.child.request("ping", timeout=PING_TIMEOUT)
            except ChildHung as err:
                conn.watchers.pop("ping", None)
                lost = ConnectionLost(Cause.ENGINE_CRASH, f"engine process hung: {err}")
                await self._lose(conn, lost, kill=True)
                return
            except ChildDied:
                return  # the pump reports it

    # ------------------------------------------------------------------ plumbing
    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _watch(self, conn: Connection, name: str, coro: Coroutine[Any, Any, None]) -> None:
        self._unwatch(conn, name)
        conn.watchers[name] = self._spawn(coro, f"neonize-{name}:{self.ctx.tenant_slug}")

    def _unwatch(self, conn: Connection, name: str) -> None:
        task = conn.watchers.pop(name, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _fail(self, conn: Connection, *, kill: bool) -> None:
        conn.phase = conn.ENDED
        conn.settled.set()
        await self._retire(kill=kill)

    async def _retire(self, *, kill: bool = False) -> None:
        """Stop the current connection's child without any event (ours to end)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.phase = conn.ENDED
        conn.settled.set()
        for name in list(conn.watchers):
            self._unwatch(conn, name)
        await self._stop_child(conn, kill=kill)

    async def _stop_child(self, conn: Connection, *, kill: bool = False) -> None:
        if kill:
            await conn.child.kill()
        else:
            await conn.child.stop(STOP_GRACE)
        pump = conn.pump
        if pump is not None and pump is not asyncio.current_task() and not pump.done():
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(pump), 3.0)
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
