"""The worker's reads and writes (SQLAlchemy Core, for speed), all fenced by the lease.

A `Fence` names the worker and the lease epoch a bot was started with. Every write a bot
makes to its tenant's rows is conditioned on the lease still being (worker, epoch): a
paused or partitioned worker that wakes up after its lease moved on writes nothing.
Write functions return booleans instead of raising, so they can share a batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Table, and_, bindparam, exists, func, select, tuple_, update
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
from wafleet.worker.batcher import MergeableWrite

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


class UpdateSession(MergeableWrite):
    """Persist a session transition (and its timeline event, and the tenant's status when
    given) only while the lease is ours; False when the lease is gone. Merged per batch —
    a reconnect storm is thousands of these: the leases of all of them are checked with
    one SELECT (locking them on PostgreSQL, so none can move before the writes; on SQLite
    a lease changed by another process makes the write transaction fail instead), then
    one executemany per set of updated columns and one for the events."""

    def __init__(
        self,
        fence: Fence,
        values: dict[str, Any],
        event: EventRecord | None,
        at: datetime,
        tenant_values: dict[str, Any] | None,
    ) -> None:
        self.fence = fence
        self.values = {**values, "updated_at": at}
        self.event = event
        self.at = at
        self.tenant_values = tenant_values

    @classmethod
    async def run_many(cls, conn: AsyncConnection, writes: list[UpdateSession]) -> list[bool]:
        tenants = sorted({w.fence.tenant_id for w in writes})
        held: set[tuple[int, str | None, int]] = set()
        for start in range(0, len(tenants), _IN_CHUNK):
            q = select(TL.c.tenant_id, TL.c.worker_id, TL.c.epoch).where(
                TL.c.tenant_id.in_(tenants[start : start + _IN_CHUNK])
            )
            if conn.dialect.name == "postgresql":
                q = q.with_for_update()
            held.update((int(t), w, int(e)) for t, w, e in (await conn.execute(q)).all())
        ok = [(w.fence.tenant_id, w.fence.worker_id, w.fence.epoch) in held for w in writes]
        # Rounds keep each tenant's own writes in submission order (at most one per round).
        rounds: list[list[UpdateSession]] = []
        last: dict[int, int] = {}
        for w, good in zip(writes, ok, strict=True):
            if good:
                r = last.get(w.fence.tenant_id, -1) + 1
                if r == len(rounds):
                    rounds.append([])
                rounds[r].append(w)
                last[w.fence.tenant_id] = r
        for members in rounds:
            by_columns: dict[tuple[str, ...], list[UpdateSession]] = {}
            for w in members:
                by_columns.setdefault(tuple(sorted(w.values)), []).append(w)
            for columns, group in by_columns.items():
                stmt = (
                    update(WS)
                    .where(WS.c.tenant_id == bindparam("b_tenant"))
                    .values({c: bindparam(f"v_{c}", type_=WS.c[c].type) for c in columns})
                )
                params = [
                    {"b_tenant": w.fence.tenant_id, **{f"v_{c}": w.values[c] for c in columns}}
                    for w in group
                ]
                await conn.execute(stmt, params)
        events: list[dict[str, Any]] = []
        for w, good in zip(writes, ok, strict=True):
            if not good:
                continue
            if w.tenant_values:  # rare (errors, actions): one statement each
                await conn.execute(
                    update(TN)
                    .where(TN.c.id == w.fence.tenant_id)
                    .values(**w.tenant_values, updated_at=w.at)
                )
            if w.event is not None:
                events.append(
                    {
                        "tenant_id": w.fence.tenant_id,
                        "at": w.at,
                        "kind": w.event.kind,
                        "from_state": w.event.from_state,
                        "to_state": w.event.to_state,
                        "cause": w.event.cause,
                        "detail": w.event.detail,
                        "worker_id": w.fence.worker_id,
                        "epoch": w.fence.epoch,
                    }
                )
        if events:
            await conn.execute(CE.insert(), events)
        return ok


def update_session_fn(
    fence: Fence,
    values: dict[str, Any],
    event: EventRecord | None,
    at: datetime,
    tenant_values: dict[str, Any] | None = None,
) -> UpdateSession:
    return UpdateSession(fence, values, event, at, tenant_values)


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


@dataclass(frozen=True)
class Stored:
    """What storing a write's inbound messages did: the (tenant id, wa_id) pairs that were
    new (duplicates skipped), and among them those whose decided outcome also committed."""

    new: set[tuple[int, str]]
    completed: set[tuple[int, str]]


class InsertInbound(MergeableWrite):
    """Store inbound messages. Merged per batch: one multi-row INSERT for every tenant's
    messages; a message new to the database counts as new for the first write holding it.

    ``decided`` holds outcomes the bot could compute before storing (a rule's answer):
    those of new messages are completed in the same transaction, through
    `CompleteInbound` (so fenced by ``fence``) — one commit on such a message's path
    instead of two. A completion the fence refuses leaves its message RECEIVED."""

    def __init__(
        self,
        items: Sequence[Inbound],
        now: datetime,
        *,
        fence: Fence | None = None,
        decided: Mapping[str, Outcome] | None = None,
    ) -> None:
        if decided and fence is None:
            raise ValueError("decided outcomes need the lease fence")
        self.items = items
        self.now = now
        self.fence = fence
        self.decided = decided or {}

    def rows(self) -> list[dict[str, Any]]:
        now = self.now
        return [
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
            for m in self.items
        ]

    @classmethod
    async def run_many(cls, conn: AsyncConnection, writes: list[InsertInbound]) -> list[Stored]:
        rows = [r for w in writes for r in w.rows()]
        new: set[tuple[int, str]] = set()
        if rows:
            stmt = (
                _insert(conn, ML)
                .on_conflict_do_nothing()
                .returning(ML.c.tenant_id, ML.c.wa_id, ML.c.id)
            )
            res = await conn.execute(stmt, rows)
            new = {(int(r[0]), str(r[1])) for r in res.all()}
        results: list[Stored] = []
        completions: list[tuple[Stored, CompleteInbound]] = []
        for w in writes:
            mine = {(m.tenant_id, m.wa_id) for m in w.items} & new
            new -= mine
            stored = Stored(mine, set())
            results.append(stored)
            if w.fence is not None:
                completions += [
                    (stored, CompleteInbound(w.fence, outcome, w.now))
                    for wa_id, outcome in w.decided.items()
                    if (w.fence.tenant_id, wa_id) in mine
                ]
        if completions:
            done = await CompleteInbound.run_many(conn, [c for _, c in completions])
            for (stored, c), ok in zip(completions, done, strict=True):
                if ok:
                    stored.completed.add((c.outcome.tenant_id, c.outcome.inbound_wa_id))
        return results


def insert_inbound_fn(
    items: Sequence[Inbound],
    now: datetime,
    *,
    fence: Fence | None = None,
    decided: Mapping[str, Outcome] | None = None,
) -> InsertInbound:
    return InsertInbound(items, now, fence=fence, decided=decided)


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


class CompleteInbound(MergeableWrite):
    """Mark one inbound message PROCESSED (or FAILED) and put its reply, if any, in the
    outbox — only while the lease is ours. Returns False when nothing was done (already
    processed, or the lease is gone). Merged per batch: one UPDATE ... RETURNING per
    (lease, outcome status) and one multi-row INSERT of replies, whatever the number of
    messages. It touches only inbound rows committed before it was submitted and their
    new reply rows, which no other write of the same batch depends on."""

    def __init__(self, fence: Fence, outcome: Outcome, now: datetime) -> None:
        self.fence = fence
        self.outcome = outcome
        self.now = now

    @classmethod
    async def run_many(cls, conn: AsyncConnection, writes: list[CompleteInbound]) -> list[bool]:
        applied: set[tuple[int, str]] = set()
        for group in _fence_groups(writes):
            first = group[0]
            status = (
                MessageStatus.FAILED if first.outcome.error else MessageStatus.PROCESSED
            ).value
            pairs = list(dict.fromkeys((w.fence.tenant_id, w.outcome.inbound_wa_id) for w in group))
            leases = list(dict.fromkeys((w.fence.tenant_id, w.fence.epoch) for w in group))
            held = exists().where(
                TL.c.tenant_id == ML.c.tenant_id,
                TL.c.worker_id == first.fence.worker_id,
                tuple_(TL.c.tenant_id, TL.c.epoch).in_(leases),
            )
            res = await conn.execute(
                update(ML)
                .where(
                    # the two plain INs let the (tenant, direction, wa_id) index find the
                    # rows; the row-value IN keeps exactly the pairs asked for
                    ML.c.tenant_id.in_(sorted({t for t, _ in pairs})),
                    ML.c.direction == MessageDirection.IN.value,
                    ML.c.wa_id.in_(sorted({wa for _, wa in pairs})),
                    tuple_(ML.c.tenant_id, ML.c.wa_id).in_(pairs),
                    ML.c.status == MessageStatus.RECEIVED.value,
                    held,
                )
                .values(
                    status=status, error=first.outcome.error, updated_at=max(w.now for w in group)
                )
                .returning(ML.c.tenant_id, ML.c.wa_id)
            )
            applied.update((int(r[0]), str(r[1])) for r in res.all())
        results: list[bool] = []
        replies: list[dict[str, Any]] = []
        for w in writes:
            key = (w.outcome.tenant_id, w.outcome.inbound_wa_id)
            ok = key in applied
            applied.discard(key)  # a duplicate in the same batch reports False, as alone
            results.append(ok)
            if ok and w.outcome.reply is not None:
                replies.append(
                    {
                        "tenant_id": w.outcome.tenant_id,
                        "direction": MessageDirection.OUT.value,
                        "wa_id": reply_wa_id(w.outcome.inbound_wa_id),
                        "chat": w.outcome.chat,
                        "sender": "me",
                        "body": w.outcome.reply,
                        "status": MessageStatus.PENDING.value,
                        "attempts": 0,
                        "created_at": w.now,
                        "updated_at": w.now,
                    }
                )
        if replies:
            await conn.execute(_insert(conn, ML).on_conflict_do_nothing(), replies)
        return results


_IN_CHUNK = 500  # messages per merged UPDATE: far below SQLite's bound-parameter limit


def _fence_groups(writes: list[CompleteInbound]) -> list[list[CompleteInbound]]:
    """Writes that one fenced UPDATE can serve: same worker, same outcome status and
    error, one lease epoch per tenant (a bot restarted on a new epoch goes apart), at
    most _IN_CHUNK of them."""
    groups: list[tuple[tuple[str, str | None], dict[int, int], list[CompleteInbound]]] = []
    for w in writes:
        key = (w.fence.worker_id, w.outcome.error)
        for gkey, epochs, members in groups:
            if (
                gkey == key
                and epochs.get(w.fence.tenant_id, w.fence.epoch) == w.fence.epoch
                and len(members) < _IN_CHUNK
            ):
                break
        else:
            gkey, epochs, members = key, {}, []
            groups.append((gkey, epochs, members))
        epochs[w.fence.tenant_id] = w.fence.epoch
        members.append(w)
    return [members for _, _, members in groups]


def complete_inbound_fn(fence: Fence, outcome: Outcome, now: datetime) -> CompleteInbound:
    return CompleteInbound(fence, outcome, now)


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


class MarkSent(MergeableWrite):
    """Outbox rows confirmed by the engine: PENDING → SENT, only while the lease is ours.
    Merged per batch: one UPDATE for every tenant's rows. Returns nothing."""

    def __init__(self, fence: Fence, ids: Sequence[int], now: datetime) -> None:
        self.fence = fence
        self.ids = ids
        self.now = now

    @classmethod
    async def run_many(cls, conn: AsyncConnection, writes: list[MarkSent]) -> list[None]:
        now = max(w.now for w in writes)
        for group in _lease_groups(writes):
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
                    .values(
                        status=MessageStatus.SENT.value, updated_at=now, attempts=ML.c.attempts + 1
                    )
                )
        return [None] * len(writes)


_Marks = TypeVar("_Marks", "MarkSent", "MarkSentByWaId")


def _lease_groups(writes: list[_Marks]) -> list[list[_Marks]]:
    """Writes one fenced UPDATE can serve: same worker, one lease epoch per tenant."""
    groups: list[tuple[str, dict[int, int], list[_Marks]]] = []
    for w in writes:
        fits = (
            g
            for g in groups
            if g[0] == w.fence.worker_id
            and g[1].get(w.fence.tenant_id, w.fence.epoch) == w.fence.epoch
        )
        group = next(fits, None)
        if group is None:
            group = (w.fence.worker_id, {}, [])
            groups.append(group)
        group[1][w.fence.tenant_id] = w.fence.epoch
        group[2].append(w)
    return [members for _, _, members in groups]


def _held(group: Sequence[MarkSent | MarkSentByWaId]) -> Any:
    """SQL condition: the row's tenant is still leased to the group's worker at its epoch."""
    leases = list(dict.fromkeys((w.fence.tenant_id, w.fence.epoch) for w in group))
    return exists().where(
        TL.c.tenant_id == ML.c.tenant_id,
        TL.c.worker_id == group[0].fence.worker_id,
        tuple_(TL.c.tenant_id, TL.c.epoch).in_(leases),
    )


def mark_sent_fn(fence: Fence, ids: Sequence[int], now: datetime) -> MarkSent:
    return MarkSent(fence, ids, now)


class MarkSentByWaId(MergeableWrite):
    """MarkSent for outbox rows known by their (stable) wa_id rather than their row id:
    the replies the pipeline sends straight from memory after completing their inbound
    messages. Same fencing; merged per batch: one UPDATE for every tenant's rows."""

    def __init__(self, fence: Fence, wa_ids: Sequence[str], now: datetime) -> None:
        self.fence = fence
        self.wa_ids = wa_ids
        self.now = now

    @classmethod
    async def run_many(cls, conn: AsyncConnection, writes: list[MarkSentByWaId]) -> list[None]:
        now = max(w.now for w in writes)
        for group in _lease_groups(writes):
            pairs = list(dict.fromkeys((w.fence.tenant_id, wa) for w in group for wa in w.wa_ids))
            for start in range(0, len(pairs), _IN_CHUNK):
                chunk = pairs[start : start + _IN_CHUNK]
                await conn.execute(
                    update(ML)
                    .where(
                        # plain INs for the (tenant, direction, wa_id) index, the row-value
                        # IN for exactly these pairs
                        ML.c.tenant_id.in_(sorted({t for t, _ in chunk})),
                        ML.c.direction == MessageDirection.OUT.value,
                        ML.c.wa_id.in_(sorted({wa for _, wa in chunk})),
                        tuple_(ML.c.tenant_id, ML.c.wa_id).in_(chunk),
                        ML.c.status == MessageStatus.PENDING.value,
                        _held(group),
                    )
                    .values(
                        status=MessageStatus.SENT.value, updated_at=now, attempts=ML.c.attempts + 1
                    )
                )
        return [None] * len(writes)


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
            for start in range(0, len(pairs), _IN_CHUNK):
                chunk = pairs[start : start + _IN_CHUNK]
                await conn.execute(
                    update(ML)
                    .where(
                        # plain INs for the (tenant, direction, wa_id) index, the row-value
                        # IN for exactly these pairs
                        ML.c.tenant_id.in_(sorted({t for t, _ in chunk})),
                        ML.c.direction == MessageDirection.OUT.value,
                        ML.c.wa_id.in_(sorted({wa for _, wa in chunk})),
                        tuple_(ML.c.tenant_id, ML.c.wa_id).in_(chunk),
                        ML.c.status.in_(allowed),
                    )
                    .values(status=status, updated_at=now)
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
