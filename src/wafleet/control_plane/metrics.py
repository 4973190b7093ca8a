"""``/metrics``: Prometheus figures computed from the database at scrape time.

A scrape reads one `FleetSnapshot` (a handful of aggregate queries) and renders it through
a custom collector in a registry made for that scrape: nothing global, nothing at import.
Worker figures (queue depth, outbox backlog, tenants, connected) come from the ``stats``
JSON each RUNNING worker writes with its heartbeat.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from wafleet.db.base import utcnow
from wafleet.db.engine import Database
from wafleet.db.models import MessageLog, Tenant, WhatsAppSession, WorkerProcess
from wafleet.states import MessageStatus, SessionState, TenantStatus, WorkerStatus

WORKER_STAT_KEYS = ("tenants", "connected", "queue_depth", "outbox_backlog")


@dataclass
class FleetSnapshot:
    sessions: dict[str, int] = field(default_factory=dict)
    tenants: dict[str, int] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=dict)
    reconnect_attempts: int = 0
    reconnecting: int = 0
    messages: dict[tuple[str, str], int] = field(default_factory=dict)  # (direction, status)
    worker_stats: dict[str, float] = field(default_factory=dict)  # summed over RUNNING
    heartbeat_age: dict[str, float] = field(default_factory=dict)  # RUNNING/STALE workers


def _num(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return 0.0  # a worker wrote something unexpected: count nothing rather than fail


async def read_snapshot(db: Database, *, now: datetime | None = None) -> FleetSnapshot:
    now = now or utcnow()
    snap = FleetSnapshot()
    async with db.session() as s:
        for state, n in (
            await s.execute(
                select(WhatsAppSession.state, func.count()).group_by(WhatsAppSession.state)
            )
        ).all():
            snap.sessions[state] = int(n)
        for status, n in (
            await s.execute(select(Tenant.status, func.count()).group_by(Tenant.status))
        ).all():
            snap.tenants[status] = int(n)
        total, active = (
            await s.execute(
                select(
                    func.coalesce(func.sum(WhatsAppSession.reconnect_attempt), 0),
                    func.count().filter(WhatsAppSession.reconnect_active.is_(True)),
                )
            )
        ).one()
        snap.reconnect_attempts, snap.reconnecting = int(total), int(active)
        for direction, status, n in (
            await s.execute(
                select(MessageLog.direction, MessageLog.status, func.count()).group_by(
                    MessageLog.direction, MessageLog.status
                )
            )
        ).all():
            snap.messages[(direction, status)] = int(n)
        rows = (
            await s.execute(
                select(
                    WorkerProcess.id,
                    WorkerProcess.status,
                    WorkerProcess.last_heartbeat_at,
                    WorkerProcess.stats,
                )
            )
        ).all()
        for wid, status, hb, stats in rows:
            snap.workers[status] = snap.workers.get(status, 0) + 1
            if status in (WorkerStatus.RUNNING, WorkerStatus.STALE):
                snap.heartbeat_age[wid] = max(0.0, (now - hb).total_seconds())
            if status == WorkerStatus.RUNNING and isinstance(stats, dict):
                for key in WORKER_STAT_KEYS:
                    snap.worker_stats[key] = snap.worker_stats.get(key, 0.0) + _num(stats.get(key))
    return snap


class SnapshotCollector(Collector):
    """Yields the metric families of one snapshot (every known label value, zeros too)."""

    def __init__(self, snap: FleetSnapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        s = self.snap
        sessions = GaugeMetricFamily(
            "wafleet_sessions", "WhatsApp sessions by state.", labels=["state"]
        )
        for state in SessionState:
            sessions.add_metric([state.value], s.sessions.get(state.value, 0))
        yield sessions
        tenants = GaugeMetricFamily("wafleet_tenants", "Tenants by status.", labels=["status"])
        for tstatus in TenantStatus:
            tenants.add_metric([tstatus.value], s.tenants.get(tstatus.value, 0))
        yield tenants
        workers = GaugeMetricFamily(
            "wafleet_workers", "Worker processes by status.", labels=["status"]
        )
        for wstatus in WorkerStatus:
            workers.add_metric([wstatus.value], s.workers.get(wstatus.value, 0))
        yield workers
        yield GaugeMetricFamily(
            "wafleet_reconnect_attempts",
            "Sum of the sessions' current reconnect attempt counters.",
            value=s.reconnect_attempts,
        )
        yield GaugeMetricFamily(
            "wafleet_sessions_reconnecting",
            "Sessions with a reconnect in progress.",
            value=s.reconnecting,
        )
        totals = CounterMetricFamily(
            "wafleet_messages", "Messages logged, by direction.", labels=["direction"]
        )
        by_status = GaugeMetricFamily(
            "wafleet_messages_by_status",
            "Messages by direction and status.",
            labels=["direction", "status"],
        )
        for direction in ("in", "out"):
            totals.add_metric(
                [direction], sum(n for (d, _), n in s.messages.items() if d == direction)
            )
        for (direction, status), n in sorted(s.messages.items()):
            by_status.add_metric([direction, status], n)
        yield totals
        yield by_status
        yield GaugeMetricFamily(
            "wafleet_outbox_pending",
            "Outbound messages waiting to be sent (message_logs PENDING).",
            value=s.messages.get(("out", MessageStatus.PENDING.value), 0),
        )
        for key, help_text in (
            ("queue_depth", "Inbound messages queued in RUNNING workers' chat queues."),
            ("outbox_backlog", "Outbox backlog reported by RUNNING workers."),
            ("tenants", "Tenants held by RUNNING workers."),
            ("connected", "Connected tenants reported by RUNNING workers."),
        ):
            yield GaugeMetricFamily(
                f"wafleet_worker_{key}", help_text, value=s.worker_stats.get(key, 0.0)
            )
        age = GaugeMetricFamily(
            "wafleet_worker_heartbeat_age_seconds",
            "Seconds since each RUNNING or STALE worker's last heartbeat.",
            labels=["worker"],
        )
        for wid, seconds in sorted(s.heartbeat_age.items()):
            age.add_metric([wid], seconds)
        yield age


def render_snapshot(snap: FleetSnapshot) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snap))
    return generate_latest(registry)


async def render_metrics(db: Database) -> tuple[bytes, str]:
    return render_snapshot(await read_snapshot(db)), CONTENT_TYPE_LATEST
