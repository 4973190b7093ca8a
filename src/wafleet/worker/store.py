"""The worker's reads and writes (SQLAlchemy Core, for speed), all fenced by the lease.

A `Fence` names the worker and the lease epoch a bot was started with. Every write a bot
makes to its tenant's rows is conditioned on the lease still being (worker, epoch): a
paused or partitioned worker that wakes up after its lease moved on writes nothing.
Write functions return booleans instead of raising, so they can share a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from wafleet.db.models import (
    ConnectionEvent,
    MessageLog,
    Tenant,
    TenantLease,
    WhatsAppSession,
)
from wafleet.states import MessageDirection, MessageStatus

ML = cast(Table, MessageLog.__table__)
WS = cast(Table, WhatsAppSession.__table__)
CE = cast(Table, ConnectionEvent.__table__)
TL = cast(Table, TenantLease.__table__)
TN = cast(Table, Tenant.__table__)


@dataclass(frozen=True)
class Fence:
    worker_id: str
    tenant_id: int
    epoch: int

    def holds(self) -> Any:
        """SQL condition: the lease is still ours at this epoch."""
        return exists().where(
            TL.c.tenant_id == self.tenant_id,
            TL.c.worker_id == self.worker_id,
            TL.c.epoch == self.epoch,
        )


@dataclass(frozen=True)
class EventRecord:
    kind: str
    from_state: str | None = None
    to_state: str | None = None
    cause: str | None = None
    detail: str | None = None


def _insert(conn: AsyncConnection, table: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


# ----------------------------------------------------------------- session + timeline


def update_session_fn(
    fence: Fence,
    values: dict[str, Any],
    event: EventRecord | None,
    at: datetime,
    tenant_values: dict[str, Any] | None = None,
) -> Any:
    async def fn(conn: AsyncConnection) -> bool:
        res = await conn.execute(
            update(WS)
            .where(WS.c.tenant_id == fence.tenant_id, fence.holds())
            .values(**values, updated_at=at)
        )
        if res.rowcount == 0:
            return False
        if tenant_values:
            await conn.execute(
                update(TN).where(TN.c.id == fence.tenant_id).values(**tenant_values, updated_at=at)
            )
        if event is not None:
            await conn.execute(
                CE.insert().values(
                    tenant_id=fence.tenant_id,
                    at=at,
                    kind=event.kind,
                    from_state=event.from_state,
                    to_state=event.to_state,
                    cause=event.cause,
                    detail=event.detail,
                    worker_id=fence.worker_id,
                )
            )
        return True

    return fn


async def load_tenant(conn: AsyncConnection, tenant_id: int) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            select(TN.c.id, TN.c.slug, TN.c.status, TN.c.config, TN.c.config_version).where(
                TN.c.id == tenant_id
            )
        )
    ).first()
    return dict(row._mapping) if row else None


async def load_session(conn: AsyncConnection, tenant_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(select(WS).where(WS.c.tenant_id == tenant_id))).first()
    return dict(row._mapping) if row else None


# ----------------------------------------------------------------- inbound


@dataclass(frozen=True)
class Inbound:
    tenant_id: int
    wa_id: str
    chat: str
    sender: str
    body: str
    at: datetime


def insert_inbound_fn(items: Sequence[Inbound], now: datetime) -> Any:
    """Store inbound messages; returns the wa_ids that were NEW (duplicates skipped)."""

    async def fn(conn: AsyncConnection) -> set[tuple[int, str]]:
        if not items:
            return set()
        rows = [
            {
                "tenant_id": m.tenant_id,
                "direction": MessageDirection.IN.value,
                "wa_id": m.wa_id,
                "chat": m.chat,
                "sender": m.sender,
                "body": m.body,
                "status": MessageStatus.RECEIVED.value,
                "attempts": 0,
                "created_at": m.at if m.at <= now else now,
                "updated_at": now,
            }
            for m in items
        ]
        stmt = (
            _insert(conn, ML)
            .on_conflict_do_nothing()
            .returning(ML.c.tenant_id, ML.c.wa_id, ML.c.id)
        )
        res = await conn.execute(stmt, rows)
        return {(int(r[0]), str(r[1])) for r in res.all()}

    return fn


@dataclass(frozen=True)
class Outcome:
    """The result of processing one inbound message."""

    tenant_id: int
    inbound_wa_id: str
    chat: str
    reply: str | None
    error: str | None = None


def reply_wa_id(inbound_wa_id: str) -> str:
    # Deterministic: re-processing the same inbound message can never create a 2nd reply.
    return f"R-{inbound_wa_id}"[:128]


def complete_inbound_fn(fence: Fence, outcome: Outcome, now: datetime) -> Any:
    async def fn(conn: AsyncConnection) -> bool:
        status = MessageStatus.FAILED if outcome.error else MessageStatus.PROCESSED
        res = await conn.execute(
            update(ML)
            .where(
                ML.c.tenant_id == outcome.tenant_id,
                ML.c.direction == MessageDirection.IN.value,
                ML.c.wa_id == outcome.inbound_wa_id,
                ML.c.status == MessageStatus.RECEIVED.value,
                fence.holds(),
            )
            .values(status=status.value, error=outcome.error, updated_at=now)
        )
        if res.rowcount == 0:
            return False
        if outcome.reply is not None:
            await conn.execute(
                _insert(conn, ML).on_conflict_do_nothing(),
                {
                    "tenant_id": outcome.tenant_id,
                    "direction": MessageDirection.OUT.value,
                    "wa_id": reply_wa_id(outcome.inbound_wa_id),
                    "chat": outcome.chat,
                    "sender": "me",
                    "body": outcome.reply,
                    "status": MessageStatus.PENDING.value,
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                },
            )
        return True

    return fn


async def received_inbound(
    conn: AsyncConnection, tenant_id: int, *, after_id: int, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(ML.c.id, ML.c.wa_id, ML.c.chat, ML.c.sender, ML.c.body, ML.c.created_at)
        .where(
            ML.c.tenant_id == tenant_id,
            ML.c.direction == MessageDirection.IN.value,
            ML.c.status == MessageStatus.RECEIVED.value,
            ML.c.id > after_id,
        )
        .order_by(ML.c.id)
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]


# ----------------------------------------------------------------- outbox


async def pending_outbox(
    conn: AsyncConnection, tenant_id: int, *, after_id: int, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(ML.c.id, ML.c.wa_id, ML.c.chat, ML.c.body, ML.c.attempts)
        .where(
            ML.c.tenant_id == tenant_id,
            ML.c.direction == MessageDirection.OUT.value,
            ML.c.status == MessageStatus.PENDING.value,
            ML.c.id > after_id,
        )
        .order_by(ML.c.id)
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]


def mark_sent_fn(fence: Fence, ids: Sequence[int], now: datetime) -> Any:
    async def fn(conn: AsyncConnection) -> bool:
        res = await conn.execute(
            update(ML)
            .where(
                ML.c.id.in_(list(ids)),
                ML.c.tenant_id == fence.tenant_id,
                ML.c.status == MessageStatus.PENDING.value,
                fence.holds(),
            )
            .values(status=MessageStatus.SENT.value, updated_at=now, attempts=ML.c.attempts + 1)
        )
        return bool(res.rowcount)

    return fn


def mark_out_failed_fn(fence: Fence, msg_id: int, error: str, now: datetime) -> Any:
    async def fn(conn: AsyncConnection) -> bool:
        res = await conn.execute(
            update(ML)
            .where(ML.c.id == msg_id, ML.c.tenant_id == fence.tenant_id, fence.holds())
            .values(status=MessageStatus.FAILED.value, error=error, updated_at=now)
        )
        return bool(res.rowcount)

    return fn


_RECEIPT_FROM = {
    MessageStatus.DELIVERED.value: (MessageStatus.PENDING.value, MessageStatus.SENT.value),
    MessageStatus.READ.value: (
        MessageStatus.PENDING.value,
        MessageStatus.SENT.value,
        MessageStatus.DELIVERED.value,
    ),
}


def apply_receipts_fn(tenant_id: int, receipts: Sequence[tuple[str, str]], now: datetime) -> Any:
    """Receipts only move a message forward (SENT → DELIVERED → READ)."""

    async def fn(conn: AsyncConnection) -> int:
        n = 0
        for status, allowed in _RECEIPT_FROM.items():
            ids = [wa for wa, st in receipts if st == status]
            if not ids:
                continue
            res = await conn.execute(
                update(ML)
                .where(
                    ML.c.tenant_id == tenant_id,
                    ML.c.direction == MessageDirection.OUT.value,
                    ML.c.wa_id.in_(ids),
                    ML.c.status.in_(allowed),
                )
                .values(status=status, updated_at=now)
            )
            n += int(res.rowcount)
        return n

    return fn


async def count_backlog(conn: AsyncConnection, tenant_ids: Sequence[int]) -> int:
    if not tenant_ids:
        return 0
    res = await conn.execute(
        select(func.count(ML.c.id)).where(
            and_(
                ML.c.tenant_id.in_(list(tenant_ids)),
                ML.c.direction == MessageDirection.OUT.value,
                ML.c.status == MessageStatus.PENDING.value,
            )
        )
    )
    return int(res.scalar_one())
