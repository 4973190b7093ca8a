"""Pairing codes: what a connection waiting for a link shows, and redeeming one.

A connection without credentials gets QR codes on WhatsApp's rotation schedule
(`QR_TTLS`, times ``time_scale``) and is closed with ``qr_timeout`` after the last one; it
may ask for a phone-number pairing code instead, which only that phone can redeem.
`Pairing.redeem` checks a scanned code; linking the device is the simulator core's job.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from wafleet.simulator import protocol as p
from wafleet.simulator.connection import QR, Conn
from wafleet.simulator.errors import ApiError

# WhatsApp's QR rotation: the first code lives 60 s, five more 20 s each, then qr_timeout.
QR_TTLS: tuple[float, ...] = (60.0, 20.0, 20.0, 20.0, 20.0, 20.0)


@dataclass(slots=True)
class QrEntry:
    conn: Conn
    expires_at: datetime | None
    phone: str | None = None  # pairing codes are bound to the phone that asked for them


class Pairing:
    def __init__(
        self,
        *,
        time_scale: float,
        now: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]],
        send: Callable[[Conn, dict[str, Any]], None],
        end: Callable[[Conn, str, datetime | None, str], None],
    ) -> None:
        self.time_scale = time_scale
        self.now = now
        self._sleep = sleep
        self._send = send  # the core's send (a blackhole swallows it)
        self._end = end  # the core's close with a reason (leaves every live structure)
        self.codes: dict[str, QrEntry] = {}  # QR and pairing codes waiting to be redeemed

    async def qr_rotation(self, conn: Conn) -> None:
        for ttl in QR_TTLS:
            seconds = ttl * self.time_scale
            code = f"2@{secrets.token_urlsafe(24)},{secrets.token_urlsafe(16)},{conn.id}"
            expires = self.now() + timedelta(seconds=seconds)
            self.codes[code] = QrEntry(conn, expires)
            conn.qr_code = code
            self._send(conn, {"type": "qr", "code": code, "expires_at": p.iso(expires)})
            try:
                await self._sleep(seconds)
            finally:
                self.codes.pop(code, None)
        conn.qr_code = None
        conn.qr_task = None  # finishing by itself: don't let the core's detach cancel us
        self._end(conn, p.QR_TIMEOUT, None, "no QR code was scanned in time")

    def pair_code(self, conn: Conn, frame: dict[str, Any]) -> None:
        phone = frame.get("phone")
        if not isinstance(phone, str) or not phone:
            return
        alphabet = "ABCDEFGHJKLMNPQRSTVWXYZ23456789"
        raw = "".join(secrets.choice(alphabet) for _ in range(8))
        code = f"{raw[:4]}-{raw[4:]}"
        self.codes[code] = QrEntry(conn, None, phone=phone)
        self._send(conn, {"type": "pair_code", "code": code})

    def redeem(self, code: str, phone: str) -> Conn:
        """The connection showing ``code``, if ``phone`` may link it now."""
        entry = self.codes.get(code)
        if entry is None or entry.conn.state != QR:
            raise ApiError(404, "unknown_qr", "no session is showing this QR code (expired?)")
        if entry.expires_at is not None and entry.expires_at <= self.now():
            raise ApiError(404, "unknown_qr", "this QR code has expired")
        if entry.phone is not None and entry.phone != phone:
            raise ApiError(409, "wrong_phone", f"this pairing code was requested for {entry.phone}")
        return entry.conn

    def forget(self, conn: Conn) -> None:
        """Drop every code ``conn`` shows (it is linked or gone)."""
        if conn.qr_code is not None:
            self.codes.pop(conn.qr_code, None)
            conn.qr_code = None
        for code in [c for c, e in self.codes.items() if e.conn is conn and e.phone]:
            del self.codes[code]
