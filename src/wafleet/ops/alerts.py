"""Operator alerts: `AlertDispatcher` watches the database from the control plane and
POSTs signed JSON to ``WAFLEET_ALERT_WEBHOOK_URL``.

What it watches, every ``poll_interval`` (default 1 s):
- new ``connection_events`` rows, by id cursor (indexed primary key; one cheap query):
  ``logged_out`` and ``temp_banned`` disconnects, and CONNECTED transitions (recovery);
- ``tenants.status = 'ERROR'`` (a set; the alert fires when a tenant enters it);
- ``worker_processes.status IN ('STALE', 'ERROR')`` (a set; recovery when RUNNING again).
Because everything comes from the database, it works whichever worker wrote the event.

Deduplication: a (tenant, kind) is alerted once while the condition lasts: a temporary
ban re-applied before the account ever reconnects is not news. CONNECTED ends every
condition of the tenant and sends one ``recovered`` alert naming what it recovered from.
Rate limit: a token bucket per tenant (and per worker), ``capacity`` per ``per_seconds``;
suppressed alerts are counted and the next one delivered carries ``"suppressed": n``.
Conditions present when the dispatcher starts are taken as known (no alert storm at
every control-plane restart; ``wafleet doctor`` lists them).

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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from wafleet.config import Settings
from wafleet.db.engine import Database
from wafleet.db.models import ConnectionEvent, Tenant, WhatsAppSession, WorkerProcess
from wafleet.logging import get_logger
from wafleet.ops.alert_delivery import (
    Alert,
    AlertSender,
    Monotonic,
    PermanentDeliveryError,
    RateLimiter,
    Sleep,
    TransientDeliveryError,
)
from wafleet.ops.explain import SessionFacts, explain
from wafleet.states import Cause, SessionState, TenantStatus, WorkerStatus

log = get_logger("wafleet.alerts")

EVENT_BATCH = 500
QUEUE_MAX = 1000
STOP_TIMEOUT = 5.0
BAD_WORKER = (WorkerStatus.STALE.value, WorkerStatus.ERROR.value)

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class AlertStats:
    queued: int = 0
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    dropped: int = 0  # queue full
    deduplicated: int = 0
    delivered: list[dict[str, Any]] = field(default_factory=list)  # the last few, for tests/UI

    def remember(self, payload: dict[str, Any], keep: int = 50) -> None:
        self.delivered.append(payload)
        del self.delivered[:-keep]


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
        self.db = db
        self.sender = sender
        self.poll_interval = poll_interval
        self.limiter = limiter if limiter is not None else RateLimiter(monotonic=monotonic)
        self.max_attempts = max_attempts  # WAFLEET_RECONNECT_MAX_ATTEMPTS, for the wording
        self.clock = clock
        self.sleep = sleep
        self.stats = AlertStats()
        self._queue: asyncio.Queue[tuple[Alert, int]] = asyncio.Queue(maxsize=queue_max)
        self._cursor = 0
        self._slugs: dict[int, str] = {}
        self._active: dict[int, set[str]] = {}  # tenant id → alerted conditions (dedupe)
        self._unrecovered: dict[int, set[str]] = {}  # tenant id → kinds awaiting CONNECTED
        self._error_tenants: set[int] = set()
        self._bad_workers: dict[str, str] = {}  # worker id → status
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
        async with self.db.session() as s:
            self._cursor = int(
                (await s.execute(select(func.max(ConnectionEvent.id)))).scalar() or 0
            )
            self._error_tenants = set(
                (
                    await s.execute(
                        select(Tenant.id).where(Tenant.status == TenantStatus.ERROR.value)
                    )
                ).scalars()
            )
            self._bad_workers = {
                wid: status
                for wid, status in (
                    await s.execute(
                        select(WorkerProcess.id, WorkerProcess.status).where(
                            WorkerProcess.status.in_(BAD_WORKER)
                        )
                    )
                ).all()
            }
        for tid in self._error_tenants:
            self._active.setdefault(tid, set()).add("tenant_error")
            self._unrecovered.setdefault(tid, set()).add("tenant_error")

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
        raised: list[Alert] = []
        async with self.db.session() as s:
            events = (
                (
                    await s.execute(
                        select(ConnectionEvent)
                        .where(ConnectionEvent.id > self._cursor)
                        .order_by(ConnectionEvent.id)
                        .limit(EVENT_BATCH)
                    )
                )
                .scalars()
                .all()
            )
            for ev in events:
                self._cursor = ev.id
                alert = await self._on_event(s, ev)
                if alert is not None:
                    raised.append(alert)
            raised += await self._check_error_tenants(s)
            raised += await self._check_workers(s)
        for alert in raised:
            self._enqueue(alert)
        return raised

    async def _on_event(self, s: Any, ev: ConnectionEvent) -> Alert | None:
        tid = ev.tenant_id
        if ev.to_state == SessionState.CONNECTED.value and ev.from_state != ev.to_state:
            self._active.pop(tid, None)
            kinds = self._unrecovered.pop(tid, set())
            if not kinds:
                return None
            slug = await self._slug(s, tid)
            return Alert(
                "recovered",
                slug,
                ev.at,
                f"{slug} is connected again after {', '.join(sorted(kinds))}.",
                {"recovered_from": sorted(kinds), "state": ev.to_state},
            )
        kind = None
        if ev.cause == Cause.LOGGED_OUT.value and ev.to_state == SessionState.LOGGED_OUT.value:
            kind = "logged_out"
        elif ev.cause == Cause.TEMP_BANNED.value:
            kind = "temp_banned"
        if kind is None:
            return None
        if not self._mark(tid, kind):
            return None
        ws = await s.get(WhatsAppSession, tid)
        base = SessionFacts.from_row(ws) if ws is not None else SessionFacts()
        facts = SessionFacts(
            state=ev.to_state,
            phone=base.phone,
            last_disconnect_cause=ev.cause,
            last_disconnect_at=ev.at,
            last_disconnect_detail=ev.detail,
            ban_expires_at=base.ban_expires_at,
            next_retry_at=base.next_retry_at,
        )
        slug = await self._slug(s, tid)
        e = explain(slug, TenantStatus.ACTIVE.value, facts, max_attempts=self.max_attempts)
        extra: dict[str, Any] = {"cause": ev.cause, "state": ev.to_state, "next_step": e.next_step}
        if kind == "temp_banned" and facts.ban_expires_at is not None:
            extra["until"] = facts.ban_expires_at.isoformat()
        if ev.worker_id:
            extra["worker"] = ev.worker_id
        return Alert(kind, slug, ev.at, e.summary, extra)

    def _mark(self, tid: int, kind: str) -> bool:
        """Record the condition; False when it is already alerted (deduplicated)."""
        active = self._active.setdefault(tid, set())
        self._unrecovered.setdefault(tid, set()).add(kind)
        if kind in active:
            self.stats.deduplicated += 1
            return False
        active.add(kind)
        return True

    async def _check_error_tenants(self, s: Any) -> list[Alert]:
        rows = (
            await s.execute(
                select(Tenant, WhatsAppSession)
                .outerjoin(WhatsAppSession, WhatsAppSession.tenant_id == Tenant.id)
                .where(Tenant.status == TenantStatus.ERROR.value)
            )
        ).all()
        now_error = {t.id for t, _ in rows}
        for tid in self._error_tenants - now_error:
            # left ERROR (restart pressed): a new ERROR is news again; recovery still
            # waits for CONNECTED
            self._active.get(tid, set()).discard("tenant_error")
        self._error_tenants = now_error
        out = []
        for tenant, ws in rows:
            self._slugs[tenant.id] = tenant.slug
            if not self._mark(tenant.id, "tenant_error"):
                continue
            facts = SessionFacts.from_row(ws) if ws is not None else None
            e = explain(
                tenant.slug,
                tenant.status,
                facts,
                error_message=tenant.error_message,
                max_attempts=self.max_attempts,
            )
            extra = {
                "cause": facts.last_disconnect_cause if facts else None,
                "error_message": tenant.error_message,
                "next_step": e.next_step,
            }
            out.append(Alert("tenant_error", tenant.slug, self.clock(), e.summary, extra))
        return out

    async def _check_workers(self, s: Any) -> list[Alert]:
        bad = (
            (await s.execute(select(WorkerProcess).where(WorkerProcess.status.in_(BAD_WORKER))))
            .scalars()
            .all()
        )
        out: list[Alert] = []
        now = self.clock()
        seen = {}
        for w in bad:
            seen[w.id] = w.status
            if self._bad_workers.get(w.id) == w.status:
                continue  # already alerted for this status
            silent = (now - w.last_heartbeat_at).total_seconds()
            kind = "worker_stale" if w.status == WorkerStatus.STALE.value else "worker_error"
            why = f": {w.error_message}" if w.error_message else ""
            out.append(
                Alert(
                    kind,
                    None,
                    now,
                    f"Worker {w.id} on {w.host} (pid {w.pid}) is {w.status}, silent for "
                    f"{silent:.0f}s{why}; its tenants were released to other workers.",
                    {
                        "worker": w.id,
                        "host": w.host,
                        "next_step": "Restart it (systemctl restart wafleet-worker@N) or "
                        "check its host; wafleet doctor lists workers.",
                    },
                )
            )
        gone = [wid for wid in self._bad_workers if wid not in seen]
        if gone:
            rows = (
                await s.execute(
                    select(WorkerProcess.id, WorkerProcess.host, WorkerProcess.status).where(
                        WorkerProcess.id.in_(gone)
                    )
                )
            ).all()
            for wid, host, status in rows:
                if status == WorkerStatus.RUNNING.value:
                    out.append(
                        Alert(
                            "worker_recovered",
                            None,
                            now,
                            f"Worker {wid} on {host} sends heartbeats again.",
                            {"worker": wid, "host": host},
                        )
                    )
        self._bad_workers = seen
        return out

    async def _slug(self, s: Any, tid: int) -> str:
        slug = self._slugs.get(tid)
        if slug is None:
            slug = str((await s.execute(select(Tenant.slug).where(Tenant.id == tid))).scalar())
            self._slugs[tid] = slug
        return slug

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
