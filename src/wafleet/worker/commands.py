"""Applying tenant commands (portal/CLI actions) inside the worker.

The control plane and CLI write `tenant_commands` rows; the supervisor polls the
unprocessed ones twice a second with an indexed query (and is woken at once by
LISTEN/NOTIFY on PostgreSQL), applies those of tenants it holds, or — for tenants no
worker holds (paused, never claimed) — applies what can be applied in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wafleet.config import Settings
from wafleet.db.models import Tenant, TenantCommand, TenantLease, WhatsAppSession
from wafleet.logging import get_logger
from wafleet.states import Action, Cause, SessionState, TenantStatus
from wafleet.worker.bot_requests import Request

if TYPE_CHECKING:
    from wafleet.worker.bot import TenantBot

TC = cast(Table, TenantCommand.__table__)
TL = cast(Table, TenantLease.__table__)
TN = cast(Table, Tenant.__table__)
WS = cast(Table, WhatsAppSession.__table__)
log = get_logger("wafleet.supervisor")  # commands are read by the supervisor's loop


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


def apply_to_bot(bot: TenantBot, cmd: Command) -> None:
    """A command for a tenant this worker runs: pass it on to its bot."""
    kind = cmd.kind
    if kind == "restart" or (kind == "resume" and bot.parked):
        bot.request(Request.RESTART)
    elif kind == "relink":
        bot.request(Request.RELINK)
    elif kind == "logout":
        bot.request(Request.LOGOUT)
    elif kind == "send":
        bot.wake_outbox()
    elif kind == "config":
        bot.reload_config()
    elif kind == "pair-phone" and isinstance(cmd.payload.get("phone"), str):
        bot.pair_phone(cmd.payload["phone"])
    # "pause" is applied by the supervisor's reconcile (the tenant's status is PAUSED)


class CommandListener:
    """LISTEN on PostgreSQL's command channel so actions reach the worker at once; the
    poll stays as a fallback (a notification can be missed while reconnecting)."""

    def __init__(self, settings: Settings) -> None:
        self.dsn = settings.database_url.replace("postgresql+asyncpg://", "postgresql://")
        self._conn: Any = None
        self._event = asyncio.Event()

    async def ensure(self) -> bool:
        import asyncpg

        from wafleet.db.repositories import COMMANDS_CHANNEL

        if self._conn is not None and not self._conn.is_closed():
            return True
        try:
            self._conn = await asyncpg.connect(self.dsn, timeout=5)
            await self._conn.add_listener(COMMANDS_CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError, TimeoutError) as err:
            log.warning("LISTEN for commands unavailable, polling", error=str(err)[:200])
            self._conn = None
            return False
        return True

    def _notified(self, *_args: object) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2)
            self._conn = None
