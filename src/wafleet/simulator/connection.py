"""One engine WebSocket as the simulator core sees it: state plus a buffered writer.

The core never awaits a socket: it `push`es frames, and the connection's writer task (run
by the ASGI handler) sends them, merging runs of ``messages``/``receipts`` into one frame.
That keeps per-message work tiny and lets one slow client never stall the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from wafleet.simulator.protocol import CLOSE_DROPPED, CLOSE_NORMAL, coalesce

if TYPE_CHECKING:
    from wafleet.simulator.phones import Device

# Connection states.
NEW = "new"  # accepted, no hello yet
QR = "qr"  # waiting for a scan
ONLINE = "online"  # logged in
CLOSED = "closed"  # the server ended it (or the socket is gone)


class Conn:
    __slots__ = (
        "_abort",
        "_closing",
        "_out",
        "_wake",
        "device",
        "id",
        "last_seen",
        "phone",
        "qr_code",
        "qr_task",
        "state",
        "token",
    )

    def __init__(self, cid: int, token: str | None, phone: str | None) -> None:
        self.id = cid
        self.token = token  # credentials presented at the upgrade, if any
        self.phone = phone  # the device's phone (known from the token), else None
        self.device: Device | None = None
        self.state = NEW
        self.qr_code: str | None = None
        self.qr_task: asyncio.Task[None] | None = None
        self._out: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._abort = False
        self.last_seen = 0.0  # monotonic time of the last frame from the client

    @property
    def closing(self) -> bool:
        return self._closing

    def push(self, frame: dict[str, Any]) -> None:
        if self._closing:
            return
        self._out.append(frame)
        self._wake.set()

    def close_with(self, frame: dict[str, Any] | None) -> None:
        """Send ``frame`` (after what is queued), then close the socket normally."""
        if self._closing:
            return
        if frame is not None:
            self._out.append(frame)
        self._closing = True
        self._wake.set()

    def abort(self) -> None:
        """Close at once, discarding queued frames, without a ``close`` frame (a drop)."""
        self._abort = True
        self._closing = True
        self._out.clear()
        self._wake.set()

    async def run_writer(
        self,
        send_text: Callable[[str], Awaitable[None]],
        close: Callable[[int], Awaitable[None]],
    ) -> None:
        """Send queued frames until the connection is closed by the core or the socket dies."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._abort:
                    await close(CLOSE_DROPPED)
                    return
                if self._out:
                    frames, self._out = self._out, []
                    for text in coalesce(frames):
                        await send_text(text)
                        if self._abort:
                            break
                    if self._abort:
                        await close(CLOSE_DROPPED)
                        return
                if self._closing and not self._out:
                    await close(CLOSE_NORMAL)
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            # The peer went away mid-send: the receive side sees the disconnect and reaps us.
            with contextlib.suppress(Exception):
                await close(CLOSE_DROPPED)
