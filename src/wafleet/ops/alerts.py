"""Operator alerts: `AlertDispatcher` watches the database from the control plane and
POSTs signed JSON to ``WAFLEET_ALERT_WEBHOOK_URL``.

Every ``poll_interval`` (default 1 s) an `AlertWatcher` (`alert_watch.py`) looks at the
database: new connection events (logged out, temporarily banned, connected again), tenants
in ERROR, STALE or ERROR workers. It deduplicates: a condition is alerted once while it
lasts. Because everything comes from the database, it works whichever worker wrote it.

Rate limit: a token bucket per tenant (and per worker), ``capacity`` per ``per_seconds``;
suppressed alerts are counted and the next one delivered carries ``"suppressed": n``.

Delivery runs in its own task from a bounded queue, so a slow receiver never delays the
watching; see `alert_delivery.AlertSender` for signing and retries.

Wiring (control-plane lifespan)::

    alerts = AlertDispatcher.from_settings(settings, db)   # None without the URL
    if alerts: await alerts.start()
    ...
    if alerts: await alerts.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

import httpx
from sqlalchemy.exc import SQLAlchemyError

from wafleet.config import Settings
from wafleet.db.engine import Database
from wafleet.logging import get_logger
from wafleet.ops.alert_delivery import (
    Alert,
    AlertSender,
    AlertStats,
    Clock,
    Monotonic,
    PermanentDeliveryError,
    RateLimiter,
    Sleep,
    TransientDeliveryError,
)
from wafleet.ops.alert_watch import AlertWatcher

log = get_logger("wafleet.alerts")

QUEUE_MAX = 1000
STOP_TIMEOUT = 5.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AlertDispatcher:
    def __init__(
        self,
        db: Database,
        sender: AlertSender,
        *,
        poll_interval: float = 1.0,
        limiter: RateLimiter | None = None,
        max_attempts: int = 20,
        clock: Clock = _utcnow,
        monotonic: Monotonic = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        queue_max: int = QUEUE_MAX,
    ) -> None:
        self.sender = sender
        self.poll_interval = poll_interval
        self.limiter = limiter if limiter is not None else RateLimiter(monotonic=monotonic)
        self.sleep = sleep
        self.stats = AlertStats()
        self.watcher = AlertWatcher(db, max_attempts=max_attempts, clock=clock, stats=self.stats)
        self._queue: asyncio.Queue[tuple[Alert, int]] = asyncio.Queue(maxsize=queue_max)
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_settings(cls, settings: Settings, db: Database) -> AlertDispatcher | None:
        if not settings.alert_webhook_url:
            return None
        sender = AlertSender(settings.alert_webhook_url, settings.resolve_portal_key())
        return cls(db, sender, max_attempts=settings.reconnect_max_attempts)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.prime()
        self._tasks = [
            asyncio.create_task(self._poll_loop(), name="alerts:watch"),
            asyncio.create_task(self._send_loop(), name="alerts:send"),
        ]

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop watching; give queued alerts up to ``timeout`` to go out, then cancel."""
        if not self._tasks:
            await self.sender.close()
            return
        watch, send = self._tasks
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        send.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await send
        self._tasks = []
        await self.sender.close()

    async def prime(self) -> None:
        """Start from now: the cursor at the newest event, present conditions known."""
        await self.watcher.prime()

    # ------------------------------------------------------------------ watching
    async def _poll_loop(self) -> None:
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except (SQLAlchemyError, OSError) as err:  # database away: next period
                log.warning("alert poll failed", error=f"{type(err).__name__}: {err}")
            except Exception:  # a bug: loud, but keep watching
                log.exception("alert poll crashed")
            await self.sleep(self.poll_interval)

    async def poll_once(self) -> list[Alert]:
        """One pass over events, ERROR tenants and workers; returns the alerts raised
        (before deduplication and rate limiting are applied to delivery)."""
        raised = await self.watcher.poll()
        for alert in raised:
            self._enqueue(alert)
        return raised

    # ------------------------------------------------------------------ delivery
    def _enqueue(self, alert: Alert) -> None:
        if not self.limiter.allow(alert.key):
            self.stats.suppressed += 1
            log.info("alert rate-limited", kind=alert.kind, tenant=alert.tenant)
            return
        try:
            self._queue.put_nowait((alert, self.limiter.take_suppressed(alert.key)))
            self.stats.queued += 1
        except asyncio.QueueFull:
            self.stats.dropped += 1
            log.warning("alert queue full; alert dropped", kind=alert.kind, tenant=alert.tenant)

    async def drain(self) -> int:
        """Deliver what is queued now, inline (when the send task is not running: tests,
        one-shot use). Returns how many were delivered."""
        ok = 0
        while not self._queue.empty():
            alert, suppressed = self._queue.get_nowait()
            try:
                ok += await self.deliver(alert, suppressed)
            finally:
                self._queue.task_done()
        return ok

    async def _send_loop(self) -> None:
        while True:
            alert, suppressed = await self._queue.get()
            try:
                await self.deliver(alert, suppressed)
            finally:
                self._queue.task_done()

    async def deliver(self, alert: Alert, suppressed: int = 0) -> bool:
        payload = alert.payload(suppressed)
        try:
            attempts = await self.sender.send(payload)
        except (PermanentDeliveryError, TransientDeliveryError, httpx.HTTPError) as err:
            self.stats.failed += 1
            log.error(
                "alert not delivered",
                kind=alert.kind,
                tenant=alert.tenant,
                error=f"{type(err).__name__}: {err}",
            )
            return False
        self.stats.sent += 1
        self.stats.remember(payload)
        log.info("alert sent", kind=alert.kind, tenant=alert.tenant, attempts=attempts)
        return True
