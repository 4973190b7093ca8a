"""One connection attempt of a `NeonizeEngine`, and decoding of what its child sends."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from wafleet.engines.neonize.process import ChildProcess
from wafleet.engines.neonize.qr import QR_ROTATION_GRACE, QrSchedule
from wafleet.states import Cause


class Connection:
    """One connection attempt: its child and its state."""

    CONNECTING, LIVE, ENDED = "connecting", "live", "ended"

    def __init__(self, child: ChildProcess) -> None:
        self.child = child
        self.phase = self.CONNECTING
        self.settled = asyncio.Event()  # connect() has decided (live or failed)
        self.logged_in = False
        self.qr = QrSchedule()
        self.pump: asyncio.Task[None] | None = None
        self.watchers: dict[str, asyncio.Task[None]] = {}

    def qr_ran_out(self, now: float) -> bool:
        """Waiting for a scan, and the last QR code of the schedule has (about) expired."""
        expires = self.qr.expires
        return bool(
            not self.logged_in
            and self.qr.last
            and expires is not None
            and now >= expires - QR_ROTATION_GRACE
        )


def cause_from_wire(value: str | None) -> Cause:
    try:
        return Cause(value) if value else Cause.SERVER_ERROR
    except ValueError:
        return Cause.SERVER_ERROR


def when_from_wire(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def log_child_record(log: Any, rec: Any) -> None:
    """A child's log record, re-logged with the parent's tenant-bound logger."""
    if not isinstance(rec, dict):
        return
    level = str(rec.get("level", "INFO")).lower()
    method = {"warning": "warning", "error": "error", "critical": "error", "debug": "debug"}
    getattr(log, method.get(level, "info"))(
        str(rec.get("msg", ""))[:4000], source=str(rec.get("logger", "neonize"))
    )
