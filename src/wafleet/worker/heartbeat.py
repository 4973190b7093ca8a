"""Worker registration and the heartbeat: ONE transaction per interval for the worker
row, every connected session's ``last_seen_at`` and the renewal of every lease."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wafleet.db.models import WhatsAppSession, WorkerProcess
from wafleet.states import WorkerStatus
from wafleet.worker import leases

WP = cast(Table, WorkerProcess.__table__)
WS = cast(Table, WhatsAppSession.__table__)


def new_worker_id() -> str:
    return f"{socket.gethostname()[:60]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


async def register(conn: AsyncConnection, worker_id: str, capacity: int, now: datetime) -> None:
    await conn.execute(
        WP.insert().values(
            id=worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            status=WorkerStatus.RUNNING.value,
            started_at=now,
            last_heartbeat_at=now,
            capacity=capacity,
            stats={},
        )
    )


async def beat(
    conn: AsyncConnection,
    worker_id: str,
    *,
    now: datetime,
    connected: list[int],
    held: dict[int, int],
    ttl: float,
    stats: dict[str, Any],
) -> set[int]:
    """Write the heartbeat; returns the tenants whose lease we lost."""
    await conn.execute(
        update(WP)
        .where(WP.c.id == worker_id)
        .values(
            last_heartbeat_at=now,
            status=WorkerStatus.RUNNING.value,
            error_message=None,
            stats=stats,
        )
    )
    lost = await leases.renew(conn, worker_id, held, now=now, ttl=ttl)
    live = [t for t in connected if t not in lost]
    if live:
        await conn.execute(
            update(WS)
            .where(WS.c.tenant_id.in_(live), WS.c.worker_id == worker_id)
            .values(last_seen_at=now)
        )
    return lost


async def mark_stopped(
    conn: AsyncConnection, worker_id: str, now: datetime, *, error: str | None = None
) -> None:
    await conn.execute(
        update(WP)
        .where(WP.c.id == worker_id)
        .values(
            status=(WorkerStatus.ERROR if error else WorkerStatus.STOPPED).value,
            stopped_at=now,
            last_heartbeat_at=now,
            error_message=error,
        )
    )
