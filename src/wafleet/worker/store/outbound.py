"""The outbox: PENDING replies a bot still has to send, their SENT (or FAILED) marks under
the lease fence, delivery receipts moving them forward, and the fleet's backlog count."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic, Self, TypeVar

from sqlalchemy import and_, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wafleet.states import MessageDirection, MessageStatus
from wafleet.worker.batcher import MergeableWrite
from wafleet.worker.store.fencing import (
    _IN_CHUNK,
    ML,
    Fence,
    _held,
    _lease_groups,
    _rows_after,
    _update_by_wa_id,
)


async def pending_outbox(
    conn: AsyncConnection, tenant_id: int, *, after_id: int, limit: int
) -> list[dict[str, Any]]:
    columns = (ML.c.id, ML.c.wa_id, ML.c.chat, ML.c.body, ML.c.attempts)
    return await _rows_after(
        conn,
        columns,
        tenant_id,
        MessageDirection.OUT,
        MessageStatus.PENDING,
        after_id=after_id,
        limit=limit,
    )


_K = TypeVar("_K")  # how a SENT mark names its rows: row id (int) or wa_id (str)


def _sent(now: datetime) -> dict[str, Any]:
    """The SET of a SENT mark: PENDING → SENT counts one attempt."""
    return {
        "status": MessageStatus.SENT.value,
        "updated_at": now,
        "attempts": ML.c.attempts + 1,
    }


class _SentMarks(MergeableWrite, Generic[_K]):
    """Outbox rows confirmed by the engine: PENDING → SENT, only while the lease is ours.
    Merged per batch (per subclass, which names the rows): one UPDATE for every tenant's
    rows. Returns nothing."""

    def __init__(self, fence: Fence, keys: Sequence[_K], now: datetime) -> None:
        self.fence = fence
        self.keys: Sequence[_K] = keys
        self.now = now

    @classmethod
    async def run_many(cls, conn: AsyncConnection, writes: list[Self]) -> list[None]:
        now = max(w.now for w in writes)
        for group in _lease_groups(writes):
            await cls._mark(conn, group, now)
        return [None] * len(writes)

    @classmethod
    async def _mark(cls, conn: AsyncConnection, group: list[Self], now: datetime) -> None:
        """Mark one lease group's rows SENT."""
        raise NotImplementedError


class MarkSent(_SentMarks[int]):
    """Outbox rows confirmed by the engine, known by their row id: PENDING → SENT, only
    while the lease is ours. Merged per batch: one UPDATE for every tenant's rows."""

    @property
    def ids(self) -> Sequence[int]:
        return self.keys

    @classmethod
    async def _mark(cls, conn: AsyncConnection, group: list[Self], now: datetime) -> None:
        # (tenant, id) pairs: an id only moves for the tenant whose bot asked for it
        pairs = [(w.fence.tenant_id, i) for w in group for i in w.ids]
        for start in range(0, len(pairs), _IN_CHUNK):
            chunk = pairs[start : start + _IN_CHUNK]
            await conn.execute(
                update(ML)
                .where(
                    ML.c.id.in_([i for _, i in chunk]),
                    tuple_(ML.c.tenant_id, ML.c.id).in_(chunk),
                    ML.c.status == MessageStatus.PENDING.value,
                    _held(group),
                )
                .values(_sent(now))
            )


def mark_sent_fn(fence: Fence, ids: Sequence[int], now: datetime) -> MarkSent:
    return MarkSent(fence, ids, now)


class MarkSentByWaId(_SentMarks[str]):
    """MarkSent for outbox rows known by their (stable) wa_id rather than their row id:
    the replies the pipeline sends straight from memory after completing their inbound
    messages. Same fencing; merged per batch: one UPDATE for every tenant's rows."""

    @property
    def wa_ids(self) -> Sequence[str]:
        return self.keys

    @classmethod
    async def _mark(cls, conn: AsyncConnection, group: list[Self], now: datetime) -> None:
        pairs = list(dict.fromkeys((w.fence.tenant_id, wa) for w in group for wa in w.wa_ids))
        await _update_by_wa_id(
            conn,
            MessageDirection.OUT,
            pairs,
            ML.c.status == MessageStatus.PENDING.value,
            _held(group),
            values=_sent(now),
        )


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


class ApplyReceipts(MergeableWrite):
    """Receipts only move a message forward (SENT → DELIVERED → READ). Merged per batch:
    one UPDATE per receipt status for every tenant's receipts. Returns nothing."""

    def __init__(self, tenant_id: int, receipts: Sequence[tuple[str, str]], now: datetime):
        self.tenant_id = tenant_id
        self.receipts = receipts
        self.now = now

    @classmethod
    async def run_many(cls, conn: AsyncConnection, writes: list[ApplyReceipts]) -> list[None]:
        now = max(w.now for w in writes)
        for status, allowed in _RECEIPT_FROM.items():
            pairs = list(
                dict.fromkeys(
                    (w.tenant_id, wa) for w in writes for wa, st in w.receipts if st == status
                )
            )
            await _update_by_wa_id(
                conn,
                MessageDirection.OUT,
                pairs,
                ML.c.status.in_(allowed),
                values={"status": status, "updated_at": now},
            )
        return [None] * len(writes)


def apply_receipts_fn(
    tenant_id: int, receipts: Sequence[tuple[str, str]], now: datetime
) -> ApplyReceipts:
    return ApplyReceipts(tenant_id, receipts, now)


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
