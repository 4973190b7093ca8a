"""Tenant leases: which worker runs which tenant, with an epoch as fencing token.

claim:   unowned or expired leases of runnable tenants (status not PAUSED), up to the
         worker's free capacity; epoch + 1 on every claim. PostgreSQL uses
         ``FOR UPDATE SKIP LOCKED`` so concurrent workers never claim the same row;
         SQLite has one writer, so the same UPDATE is already exclusive.
renew:   extend every lease we hold at our epoch; the rows that no longer match are
         leases we lost (expired and taken, or released by the stale-worker job).
release: on graceful shutdown, so the next owner doesn't wait for expiry.
fair_share / pick_hand_overs: how many tenants a worker should hold, and which of its
         own it hands over (stop, then release) when a new worker joins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wafleet.db.models import Tenant, TenantLease
from wafleet.states import SessionState, TenantStatus

TL = cast(Table, TenantLease.__table__)
TN = cast(Table, Tenant.__table__)


@dataclass(frozen=True)
class Lease:
    tenant_id: int
    slug: str
    epoch: int


async def claim(
    conn: AsyncConnection,
    worker_id: str,
    *,
    now: datetime,
    ttl: float,
    limit: int,
    prefer: list[int] | None = None,
) -> list[Lease]:
    """Claim up to ``limit`` free leases; returns the newly claimed ones."""
    if limit <= 0:
        return []
    free = or_(TL.c.worker_id.is_(None), TL.c.expires_at.is_(None), TL.c.expires_at < now)
    q = (
        select(TL.c.tenant_id, TL.c.epoch, TN.c.slug)
        .join(TN, TN.c.id == TL.c.tenant_id)
        .where(free, TN.c.status != TenantStatus.PAUSED.value)
        .order_by(TL.c.tenant_id)
        .limit(limit)
    )
    if prefer:
        q = q.where(TL.c.tenant_id.in_(prefer))
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(of=TL, skip_locked=True)
    rows = (await conn.execute(q)).all()
    claimed: list[Lease] = []
    expires = now + timedelta(seconds=ttl)
    for tenant_id, epoch, slug in rows:
        res = await conn.execute(
            update(TL)
            .where(TL.c.tenant_id == tenant_id, TL.c.epoch == epoch, free)
            .values(worker_id=worker_id, epoch=epoch + 1, expires_at=expires, acquired_at=now)
        )
        if res.rowcount == 1:
            claimed.append(Lease(int(tenant_id), str(slug), int(epoch) + 1))
    return claimed


async def renew(
    conn: AsyncConnection, worker_id: str, held: dict[int, int], *, now: datetime, ttl: float
) -> set[int]:
    """Extend our leases; returns the tenant ids we no longer hold."""
    if not held:
        return set()
    await conn.execute(
        update(TL)
        .where(TL.c.worker_id == worker_id)
        .values(expires_at=now + timedelta(seconds=ttl))
    )
    rows = await conn.execute(select(TL.c.tenant_id, TL.c.epoch).where(TL.c.worker_id == worker_id))
    still = {int(t): int(e) for t, e in rows.all()}
    return {t for t, e in held.items() if still.get(t) != e}


async def release(
    conn: AsyncConnection, worker_id: str, tenant_ids: list[int] | None = None
) -> int:
    cond = TL.c.worker_id == worker_id
    if tenant_ids is not None:
        cond = and_(cond, TL.c.tenant_id.in_(tenant_ids))
    res = await conn.execute(update(TL).where(cond).values(worker_id=None, expires_at=None))
    return int(res.rowcount)


async def paused_tenants(conn: AsyncConnection, tenant_ids: list[int]) -> set[int]:
    if not tenant_ids:
        return set()
    rows = await conn.execute(
        select(TN.c.id).where(TN.c.id.in_(tenant_ids), TN.c.status == TenantStatus.PAUSED.value)
    )
    return {int(r[0]) for r in rows.all()}


async def fair_share(
    conn: AsyncConnection, *, now: datetime, live_window: float, capacity: int
) -> int:
    """How many tenants one worker should hold: runnable tenants / live workers, rounded
    up, at most the capacity. A worker counts as live while its heartbeat is recent."""
    from sqlalchemy import func

    from wafleet.db.models import WorkerProcess
    from wafleet.states import WorkerStatus

    wp = cast(Table, WorkerProcess.__table__)
    live = (
        await conn.execute(
            select(func.count(wp.c.id)).where(
                wp.c.status == WorkerStatus.RUNNING.value,
                wp.c.last_heartbeat_at > now - timedelta(seconds=live_window),
            )
        )
    ).scalar_one()
    total = (
        await conn.execute(
            select(func.count(TN.c.id)).where(TN.c.status != TenantStatus.PAUSED.value)
        )
    ).scalar_one()
    workers = max(1, int(live))
    return min(capacity, -(-int(total) // workers))


# A session someone is linking right now (QR shown, or the post-pairing reconnect) is
# never moved: the pairing would be lost with the connection. Idle ones go first.
_HAND_OVER_ORDER = {
    SessionState.DISCONNECTED: 0,
    SessionState.LOGGED_OUT: 0,
    SessionState.CONNECTED: 1,
}


def pick_hand_overs(states: dict[int, SessionState], count: int) -> list[int]:
    movable = [t for t, st in states.items() if st in _HAND_OVER_ORDER]
    movable.sort(key=lambda t: (_HAND_OVER_ORDER[states[t]], -t))
    return movable[:count]
