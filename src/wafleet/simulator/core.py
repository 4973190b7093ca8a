"""The simulator's state machine: accounts, devices, QR pairing, delivery, faults, stats.

Transport-free: the ASGI layer (`asgi.py`) feeds it handshakes, frames and disconnects;
it answers by pushing frames onto `Conn`s. Everything runs on one event loop, so no locks.
Fault semantics are documented in `faults.py`, the wire protocol in `protocol.py`; the
codes shown to connections waiting for a link live in `pairing.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from wafleet.simulator import protocol as p
from wafleet.simulator.connection import CLOSED, NEW, ONLINE, QR, Conn
from wafleet.simulator.errors import ApiError
from wafleet.simulator.faults import ALL, KINDS, ONE_SHOT, Fault, FaultTable
from wafleet.simulator.pairing import Pairing
from wafleet.simulator.phones import Account, Device


class Simulator:
    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        idle_timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.time_scale = time_scale
        # Like WhatsApp's servers, drop a client that has sent nothing (not even a ping)
        # for this many seconds (wall clock, not scaled; 0 disables). A frozen worker's
        # sockets therefore close before its leases can be taken over.
        self.idle_timeout = idle_timeout
        self._reaper: asyncio.Task[None] | None = None
        self.clock = clock
        self.now = now
        self._sleep = sleep
        self.accounts: dict[str, Account] = {}
        self.devices: dict[str, Device] = {}
        self.faults = FaultTable(clock)
        self.pairing = Pairing(
            time_scale=time_scale, now=now, sleep=sleep, send=self._send, end=self._end
        )
        self.conns: set[Conn] = set()
        self.max_concurrent: dict[str, int] = {}
        self.connect_attempts: dict[str, int] = {}
        self.delivered = 0  # inbound messages acked by an engine (each counted once)
        self.deliveries = 0  # inbound messages written to sockets (redeliveries included)
        self.outbound_count = 0
        self._ids = itertools.count(1)
        self._msg_prefix = "3EB0" + secrets.token_hex(4).upper()  # unique per server run
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ sockets

    def handshake(self, token: str | None) -> tuple[str, Conn | None]:
        """A new WebSocket upgrade: ``("refuse", None)``, ``("drop", conn)`` or ``("ok", conn)``."""
        dev = self.devices.get(token) if token else None
        phone = dev.phone if dev is not None else None
        if phone is not None:
            self.connect_attempts[phone] = self.connect_attempts.get(phone, 0) + 1
        if self.faults and self.faults.active("refuse", phone):
            return "refuse", None
        conn = Conn(next(self._ids), token, phone)
        conn.last_seen = self.clock()
        self.conns.add(conn)
        if self.idle_timeout > 0 and self._reaper is None:
            self._reaper = self._spawn(self._reap_idle(), "sim-idle-reaper")
        if self.faults and self.faults.active("drop", phone):
            conn.state = CLOSED
            return "drop", conn
        return "ok", conn

    def closed(self, conn: Conn) -> None:
        """The socket is gone (either side closed it)."""
        self._detach(conn)
        self.conns.discard(conn)

    def frame(self, conn: Conn, text: str | bytes) -> None:
        if conn.state == CLOSED:
            return
        conn.last_seen = self.clock()
        if self.faults and self.faults.active("blackhole", conn.phone):
            return  # a blackhole ignores everything
        frame = p.decode(text)
        if frame is None:
            return
        kind = frame["type"]
        if kind == "ack":
            self._ack(conn, frame)
        elif kind == "send":
            self._record_send(conn, frame)
        elif kind == "ping":
            self._send(conn, {"type": "pong", "id": frame.get("id")})
        elif kind == "hello":
            self._hello(conn, frame)
        elif kind == "logout" and conn.state == ONLINE and conn.device is not None:
            self._unlink(conn.device)
        elif kind == "unlink" and conn.state == NEW:
            dev = self.devices.get(str(frame.get("creds") or ""))
            if dev is not None:
                self._unlink(dev)
            conn.state = CLOSED
            conn.close_with({"type": "unlinked", "ok": dev is not None})
        elif kind == "pair_phone" and conn.state == QR:
            self.pairing.pair_code(conn, frame)

    def _send(self, conn: Conn, frame: dict[str, Any]) -> None:
        if self.faults and self.faults.active("blackhole", conn.phone):
            return
        conn.push(frame)

    def _hello(self, conn: Conn, frame: dict[str, Any]) -> None:
        if conn.state != NEW:
            return
        token = frame.get("creds")
        if not token:
            conn.state = QR
            conn.qr_task = self._spawn(self.pairing.qr_rotation(conn), f"sim-qr-{conn.id}")
            return
        dev = self.devices.get(str(token))
        if dev is None or not dev.linked:
            return self._refuse_login(conn, p.LOGGED_OUT, None, "device not linked")
        phone = dev.phone
        conn.phone = phone
        ban = self.faults.active("temp_ban", phone) if self.faults else None
        if ban is not None:
            return self._refuse_login(conn, p.TEMP_BANNED, self._expiry(ban), "temporary ban")
        if self.faults and self.faults.active("outdated", phone):
            return self._refuse_login(conn, p.CLIENT_OUTDATED, None, "client version outdated")
        acct = self.accounts[phone]
        older = [c for c in acct.conns if c.device is dev]
        conn.device = dev
        conn.state = ONLINE
        acct.conns.append(conn)
        # Counted before the older one is replaced: a session run twice must show as 2.
        if len(acct.conns) > self.max_concurrent.get(phone, 0):
            self.max_concurrent[phone] = len(acct.conns)
        for old in older:
            self._end(old, p.REPLACED, detail="another connection logged in with this device")
        conn.push({"type": "connected", "phone": phone, "jid": acct.jid})
        if acct.pending:
            items = list(acct.pending.values())
            self.deliveries += len(items)
            conn.push({"type": "messages", "items": items})

    def _refuse_login(self, conn: Conn, reason: str, expires: datetime | None, detail: str) -> None:
        conn.state = CLOSED
        conn.close_with(
            {
                "type": "login_failed",
                "reason": reason,
                "expires_at": p.iso(expires),
                "detail": detail,
            }
        )

    def _ack(self, conn: Conn, frame: dict[str, Any]) -> None:
        acct = self.accounts.get(conn.phone) if conn.phone else None
        ids = frame.get("ids")
        if acct is None or not isinstance(ids, list):
            return
        pending = acct.pending
        for mid in ids:
            if isinstance(mid, str) and pending.pop(mid, None) is not None:
                self.delivered += 1

    def _record_send(self, conn: Conn, frame: dict[str, Any]) -> None:
        mid, to, text = frame.get("id"), frame.get("to"), frame.get("text")
        if conn.state != ONLINE or conn.phone is None:
            return
        if not (isinstance(mid, str) and mid and isinstance(to, str) and isinstance(text, str)):
            return
        acct = self.accounts[conn.phone]
        duplicate = mid in acct.outbound_ids
        at = p.iso(self.now())
        if not duplicate:
            acct.outbound_ids.add(mid)
            acct.outbound.append({"id": mid, "to": to, "text": text, "at": at})
            self.outbound_count += 1
        conn.push({"type": "sent", "id": mid, "duplicate": duplicate})
        conn.push(
            {
                "type": "receipts",
                "items": [
                    {"id": mid, "status": "DELIVERED", "at": at},
                    {"id": mid, "status": "READ", "at": at},
                ],
            }
        )

    # ------------------------------------------------------------------ pairing

    def scan(self, code: str, phone: str) -> dict[str, Any]:
        """Link a new device of ``phone`` to the connection showing ``code``."""
        conn = self.pairing.redeem(code, phone)
        acct = self.accounts.get(phone)
        if acct is None:
            acct = self.accounts[phone] = Account(phone)
        dev = Device(token=secrets.token_urlsafe(32), phone=phone)
        self.devices[dev.token] = dev
        acct.devices.append(dev)
        self._detach(conn)
        conn.push({"type": "pair_success", "phone": phone, "jid": acct.jid, "creds": dev.token})
        conn.close_with(
            {
                "type": "close",
                "reason": p.RESTART_REQUIRED,
                "expires_at": None,
                "detail": "paired; reconnect with the new credentials",
            }
        )
        return {"phone": phone, "jid": acct.jid}

    # ------------------------------------------------------------------ messages

    def account(self, phone: str) -> Account:
        acct = self.accounts.get(phone)
        if acct is None:
            raise ApiError(404, "unknown_phone", f"no account is linked to {phone}")
        return acct

    def inbound(self, messages: Iterable[tuple[str, str, str]]) -> list[str]:
        """Queue (phone, from, text) messages; every phone must be known (checked first)."""
        batch = list(messages)
        for phone, _, _ in batch:
            self.account(phone)
        at = p.iso(self.now())
        ids: list[str] = []
        per_account: dict[str, list[dict[str, Any]]] = {}
        for phone, sender, text in batch:
            mid = f"{self._msg_prefix}{next(self._ids):010X}"
            item = {"id": mid, "chat": sender, "sender": sender, "text": text, "at": at}
            self.accounts[phone].pending[mid] = item
            per_account.setdefault(phone, []).append(item)
            ids.append(mid)
        for phone, items in per_account.items():
            for conn in self.accounts[phone].conns:
                if conn.state == ONLINE:
                    self.deliveries += len(items)
                    self._send(conn, {"type": "messages", "items": list(items)})
        return ids

    # ------------------------------------------------------------------ faults

    def add_fault(self, kind: str, phone: str, duration_s: float | None) -> dict[str, Any]:
        if kind not in KINDS:
            raise ApiError(422, "unknown_fault", f"unknown fault kind {kind!r}; one of {KINDS}")
        if phone != ALL:
            self.account(phone)
        if kind in ONE_SHOT:
            duration_s = None  # acts once on the open connections: nothing to expire
        seconds = duration_s * self.time_scale if duration_s is not None else None
        until = self.clock() + seconds if seconds is not None else None
        fault = Fault(kind, phone, until)
        expires = self.now() + timedelta(seconds=seconds) if seconds is not None else None
        online = [c for c in self.conns if c.state == ONLINE and fault.applies_to(c.phone)]
        if kind == "drop":
            for conn in [c for c in self.conns if phone == ALL or c.phone == phone]:
                self._detach(conn)
                conn.abort()
            if until is not None:
                self.faults.add(fault)
        elif kind in ("blackhole", "refuse"):
            self.faults.add(fault)
        elif kind == "logout":
            for dev in self.devices.values():
                if fault.applies_to(dev.phone):
                    self._unlink(dev)
        elif kind == "replaced":
            for conn in online:
                self._end(conn, p.REPLACED, detail="another client took over the session")
        elif kind == "temp_ban":
            self.faults.add(fault)
            for conn in online:
                self._end(conn, p.TEMP_BANNED, expires, "temporary ban")
        elif kind == "restart_required":
            for conn in online:
                self._end(conn, p.RESTART_REQUIRED, detail="server asked for a restart")
        elif kind == "outdated":
            self.faults.add(fault)
            for conn in online:
                self._end(conn, p.CLIENT_OUTDATED, detail="client version outdated")
        return {"kind": kind, "phone": phone, "expires_at": p.iso(expires), "affected": len(online)}

    def clear_faults(self, phone: str | None) -> int:
        return self.faults.clear(phone)

    def _expiry(self, fault: Fault) -> datetime | None:
        if fault.until is None:
            return None
        return self.now() + timedelta(seconds=max(0.0, fault.until - self.clock()))

    def _unlink(self, dev: Device) -> None:
        dev.linked = False
        acct = self.accounts.get(dev.phone)
        if acct is not None:
            for conn in [c for c in acct.conns if c.device is dev]:
                self._end(conn, p.LOGGED_OUT, detail="the device was unlinked")

    # ------------------------------------------------------------------ helpers

    def _end(
        self, conn: Conn, reason: str, expires: datetime | None = None, detail: str = ""
    ) -> None:
        self._detach(conn)
        conn.close_with(
            {"type": "close", "reason": reason, "expires_at": p.iso(expires), "detail": detail}
        )

    def _detach(self, conn: Conn) -> None:
        """Take ``conn`` out of every live structure (idempotent)."""
        if conn.state == ONLINE and conn.phone is not None:
            acct = self.accounts.get(conn.phone)
            if acct is not None and conn in acct.conns:
                acct.conns.remove(conn)
        task, conn.qr_task = conn.qr_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self.pairing.forget(conn)
        conn.state = CLOSED

    async def _reap_idle(self) -> None:
        period = max(0.05, self.idle_timeout / 4)
        while True:
            await self._sleep(period)
            self.reap_idle()

    def reap_idle(self) -> int:
        """Drop every client silent for longer than the idle timeout; returns how many."""
        limit = self.clock() - self.idle_timeout
        idle = [c for c in self.conns if c.state != CLOSED and c.last_seen < limit]
        for conn in idle:
            self._detach(conn)
            conn.abort()
        return len(idle)

    def _spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def aclose(self) -> None:
        """Cancel timers and drop every connection (server shutdown)."""
        for conn in list(self.conns):
            self._detach(conn)
            conn.abort()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
