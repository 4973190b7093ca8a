"""Applying tenant commands (portal/CLI actions) inside the worker.

The control plane and CLI write `tenant_commands` rows; the supervisor polls the
unprocessed ones twice a second with an indexed query (and is woken at once by
LISTEN/NOTIFY on PostgreSQL), applies those of tenants it holds, or — for tenants no
worker holds (paused, never claimed) — applies what can be applied in the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wafleet.db.models import Tenant, TenantCommand, TenantLease, WhatsAppSession
from wafleet.states import Action, Cause, SessionState, TenantStatus

TC = cast(Table, TenantCommand.__table__)
TL = cast(Table, TenantLease.__table__)
TN = cast(Table, Tenant.__table__)
WS = cast(Table, WhatsAppSession.__table__)


@dataclass(frozen=True)
class Command:
    id: int
    tenant_id: int
    kind: str
    payload: dict[str, Any]
    lease_owner: str | None


async def pending(conn: AsyncConnection, limit: int = 200) -> list[Command]:
    rows = await conn.execute(
        select(TC.c.id, TC.c.tenant_id, TC.c.kind, TC.c.payload, TL.c.worker_id)
        .outerjoin(TL, TL.c.tenant_id == TC.c.tenant_id)
        .where(TC.c.processed_at.is_(None))
        .order_by(TC.c.id)
        .limit(limit)
    )
    return [Command(int(r[0]), int(r[1]), str(r[2]), dict(r[3] or {}), r[4]) for r in rows.all()]


async def mark_done(conn: AsyncConnection, command_id: int, now: datetime, result: str) -> bool:
    res = await conn.execute(
        update(TC)
        .where(TC.c.id == command_id, TC.c.processed_at.is_(None))
        .values(processed_at=now, result=result[:500])
    )
    return bool(res.rowcount)


async def apply_unheld(conn: AsyncConnection, cmd: Command, now: datetime) -> str:
    """A command for a tenant no worker runs: apply it to the rows directly."""
    active = {"status": TenantStatus.ACTIVE.value, "error_message": None, "updated_at": now}
    if cmd.kind in ("restart", "resume"):
        await conn.execute(update(TN).where(TN.c.id == cmd.tenant_id).values(**active))
        return "tenant set ACTIVE; a worker will claim it"
    if cmd.kind == "relink":
        await conn.execute(update(TN).where(TN.c.id == cmd.tenant_id).values(**active))
        await conn.execute(
            update(WS)
            .where(WS.c.tenant_id == cmd.tenant_id)
            .values(state=SessionState.DISCONNECTED.value, phone=None, jid=None, updated_at=now)
        )
        return "relink: credentials will be replaced at the next connect"
    if cmd.kind == "logout":
        await conn.execute(
            update(WS)
            .where(WS.c.tenant_id == cmd.tenant_id)
            .values(
                state=SessionState.LOGGED_OUT.value,
                last_disconnect_cause=Cause.LOGGED_OUT.value,
                last_disconnect_action=Action.NEEDS_LINK.value,
                last_disconnect_at=now,
                last_disconnect_detail="logged out by request",
                updated_at=now,
            )
        )
        return "session marked LOGGED_OUT"
    return "nothing to do (tenant not running)"
