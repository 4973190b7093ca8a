"""Read queries of the API, each a single round trip (no N+1): the status of one tenant,
the fleet overview and the workers. Tenant reads take a `TenantScope` and filter by its
id only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from wafleet.control_plane import schemas as sch
from wafleet.db.models import MessageLog, Tenant, TenantLease, WhatsAppSession, WorkerProcess
from wafleet.db.repositories import TenantScope
from wafleet.states import MessageStatus, SessionState


def _count(tenant_id: int, *conds: Any) -> Any:
    return (
        select(func.count(MessageLog.id))
        .where(MessageLog.tenant_id == tenant_id, *conds)
        .scalar_subquery()
    )


def _disconnect(ws: WhatsAppSession | None) -> sch.DisconnectInfo | None:
    if ws is None or not ws.last_disconnect_cause:
        return None
    return sch.DisconnectInfo(
        cause=ws.last_disconnect_cause,
        action=ws.last_disconnect_action,
        at=ws.last_disconnect_at,
        detail=ws.last_disconnect_detail,
    )


_LEASED_WORKER = func.coalesce(TenantLease.worker_id, WhatsAppSession.worker_id)


async def tenant_status(
    scope: TenantScope, *, now: datetime, max_attempts: int
) -> sch.StatusResponse:
    tid = scope.tenant_id
    since = now - timedelta(hours=24)
    q = (
        select(
            Tenant.slug,
            Tenant.name,
            Tenant.status,
            Tenant.error_message,
            WhatsAppSession,
            WorkerProcess.id,
            WorkerProcess.host,
            WorkerProcess.status,
            WorkerProcess.last_heartbeat_at,
            _count(tid, MessageLog.direction == "in", MessageLog.created_at >= since),
            _count(tid, MessageLog.direction == "out", MessageLog.created_at >= since),
            _count(tid, MessageLog.direction == "out", MessageLog.status == MessageStatus.PENDING),
        )
        .select_from(Tenant)
        .outerjoin(WhatsAppSession, WhatsAppSession.tenant_id == Tenant.id)
        .outerjoin(TenantLease, TenantLease.tenant_id == Tenant.id)
        .outerjoin(WorkerProcess, WorkerProcess.id == _LEASED_WORKER)
        .where(Tenant.id == tid)
    )
    row = (await scope.s.execute(q)).one()
    slug, name, status, error_message, ws, w_id, w_host, w_status, w_hb, n_in, n_out, n_pend = row
    worker = (
        sch.WorkerInfo(id=w_id, host=w_host, status=w_status, last_heartbeat_at=w_hb)
        if w_id is not None
        else None
    )
    return sch.StatusResponse(
        tenant=sch.TenantInfo(slug=slug, name=name, status=status, error_message=error_message),
        session=sch.SessionInfo(
            state=ws.state if ws else SessionState.DISCONNECTED,
            phone=ws.phone if ws else None,
            last_seen_at=ws.last_seen_at if ws else None,
            connected_since=ws.connected_since if ws else None,
            last_qr_at=ws.last_qr_at if ws else None,
        ),
        worker=worker,
        reconnect=sch.ReconnectInfo(
            active=bool(ws.reconnect_active) if ws else False,
            attempt=ws.reconnect_attempt if ws else 0,
            max_attempts=max_attempts,
            next_retry_at=ws.next_retry_at if ws else None,
        ),
        last_disconnect=_disconnect(ws),
        messages=sch.MessageCounts(in_24h=n_in, out_24h=n_out, pending_out=n_pend),
    )


HOURS = 24


async def hourly_counts(scope: TenantScope, *, now: datetime) -> list[sch.HourCount]:
    """Messages in/out per hour for the last 24 hours (oldest first, zeros included),
    counted by the database (one grouped query on the tenant's created_at index)."""
    last = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    first = last - timedelta(hours=HOURS - 1)
    dialect = scope.s.get_bind().dialect.name
    if dialect == "postgresql":
        hour: Any = func.date_trunc("hour", func.timezone("UTC", MessageLog.created_at))
    else:  # SQLite stores naive UTC text
        hour = func.strftime("%Y-%m-%d %H:00:00", MessageLog.created_at)
    q = (
        select(hour, MessageLog.direction, func.count(MessageLog.id))
        .where(MessageLog.tenant_id == scope.tenant_id, MessageLog.created_at >= first)
        .group_by(hour, MessageLog.direction)
    )
    counts: dict[datetime, dict[str, int]] = {}
    for at, direction, n in (await scope.s.execute(q)).all():
        start = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
        start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
        counts.setdefault(start, {})[direction] = int(n)
    buckets = []
    for i in range(HOURS):
        start = first + timedelta(hours=i)
        c = counts.get(start, {})
        buckets.append(sch.HourCount(hour=start, in_=c.get("in", 0), out=c.get("out", 0)))
    return buckets


async def admin_tenants(
    session: AsyncSession, *, state: str | None, status: str | None
) -> list[sch.AdminTenantItem]:
    q = (
        select(Tenant.slug, Tenant.name, Tenant.status, WhatsAppSession, _LEASED_WORKER)
        .select_from(Tenant)
        .outerjoin(WhatsAppSession, WhatsAppSession.tenant_id == Tenant.id)
        .outerjoin(TenantLease, TenantLease.tenant_id == Tenant.id)
        .order_by(Tenant.slug)
    )
    if state is not None:
        q = q.where(func.coalesce(WhatsAppSession.state, SessionState.DISCONNECTED) == state)
    if status is not None:
        q = q.where(Tenant.status == status)
    items = []
    for slug, name, t_status, ws, worker_id in (await session.execute(q)).all():
        items.append(
            sch.AdminTenantItem(
                slug=slug,
                name=name,
                status=t_status,
                session_state=ws.state if ws else SessionState.DISCONNECTED,
                phone=ws.phone if ws else None,
                worker_id=worker_id,
                last_seen_at=ws.last_seen_at if ws else None,
                last_disconnect=_disconnect(ws),
            )
        )
    return items


async def workers(session: AsyncSession, *, status: str | None) -> list[sch.WorkerItem]:
    held = (
        select(TenantLease.worker_id.label("worker_id"), func.count().label("n"))
        .where(TenantLease.worker_id.is_not(None))
        .group_by(TenantLease.worker_id)
        .subquery()
    )
    q = (
        select(WorkerProcess, func.coalesce(held.c.n, 0))
        .outerjoin(held, held.c.worker_id == WorkerProcess.id)
        .order_by(WorkerProcess.started_at.desc(), WorkerProcess.id)
    )
    if status is not None:
        q = q.where(WorkerProcess.status == status)
    return [
        sch.WorkerItem(
            id=w.id,
            host=w.host,
            pid=w.pid,
            status=w.status,
            started_at=w.started_at,
            last_heartbeat_at=w.last_heartbeat_at,
            tenants=int(n),
        )
        for w, n in (await session.execute(q)).all()
    ]


async def wait_pair_code(scope: TenantScope, timeout: float, poll: float = 0.2) -> str | None:
    """The pairing code the worker publishes on the session row, or None after ``timeout``."""
    import asyncio

    from sqlalchemy import select

    from wafleet.db.models import WhatsAppSession

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        code = (
            await scope.s.execute(
                select(WhatsAppSession.pair_code).where(
                    WhatsAppSession.tenant_id == scope.tenant_id
                )
            )
        ).scalar()
        await scope.s.commit()  # end the read transaction so the next poll sees new rows
        if code or loop.time() >= deadline:
            return str(code) if code else None
        await asyncio.sleep(poll)
