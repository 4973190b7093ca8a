"""Watching side of operator alerts: `AlertWatcher` turns database changes into `Alert`s.

What it watches, on every ``poll``:
- new ``connection_events`` rows, by id cursor (indexed primary key; one cheap query):
  ``logged_out`` and ``temp_banned`` disconnects, and CONNECTED transitions (recovery);
- ``tenants.status = 'ERROR'`` (a set; the alert fires when a tenant enters it);
- ``worker_processes.status IN ('STALE', 'ERROR')`` (a set; recovery when RUNNING again).
Because everything comes from the database, it works whichever worker wrote the event.

Deduplication: a (tenant, kind) is alerted once while the condition lasts: a temporary
ban re-applied before the account ever reconnects is not news. CONNECTED ends every
condition of the tenant and raises one ``recovered`` alert naming what it recovered from.
Conditions present at ``prime`` are taken as known (no alert storm at every
control-plane restart; ``wafleet doctor`` lists them).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from wafleet.db.engine import Database
from wafleet.db.models import ConnectionEvent, Tenant, WhatsAppSession, WorkerProcess
from wafleet.ops.alert_delivery import Alert, AlertStats, Clock
from wafleet.ops.explain import SessionFacts, explain
from wafleet.states import Cause, SessionState, TenantStatus, WorkerStatus

EVENT_BATCH = 500
BAD_WORKER = (WorkerStatus.STALE.value, WorkerStatus.ERROR.value)


class AlertWatcher:
    def __init__(self, db: Database, *, max_attempts: int, clock: Clock, stats: AlertStats) -> None:
        self.db = db
        self.max_attempts = max_attempts  # WAFLEET_RECONNECT_MAX_ATTEMPTS, for the wording
        self.clock = clock
        self.stats = stats
        self._cursor = 0
        self._slugs: dict[int, str] = {}
        self._active: dict[int, set[str]] = {}  # tenant id → alerted conditions (dedupe)
        self._unrecovered: dict[int, set[str]] = {}  # tenant id → kinds awaiting CONNECTED
        self._error_tenants: set[int] = set()
        self._bad_workers: dict[str, str] = {}  # worker id → status

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

    async def poll(self) -> list[Alert]:
        """One pass over events, ERROR tenants and workers; returns the alerts raised."""
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
