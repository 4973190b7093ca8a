"""Inbound messages: stored on arrival (deduplicated by wa_id), then completed — marked
PROCESSED or FAILED with their reply put in the outbox, under the lease fence — and the
RECEIVED ones a bot still has to process."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from wafleet.states import MessageDirection, MessageStatus
from wafleet.worker.batcher import MergeableWrite
from wafleet.worker.store.fencing import (
    _IN_CHUNK,
    ML,
    Fence,
    _held,
    _insert,
    _lease_groups,
    _leases_held,
    _rows_after,
    _update_by_wa_id,
)


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
    while the lease is ``fence``, such a message is stored done — PROCESSED, its reply
    row PENDING, in this same transaction — so its path has one commit, not two. If the
    lease has moved on, it is stored RECEIVED and decided nothing (its processing will
    find the lease gone); a message stored before is left as it is."""

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

    def rows(self, decided: Mapping[str, Outcome]) -> list[dict[str, Any]]:
        now = self.now
        rows = []
        for m in self.items:
            outcome = decided.get(m.wa_id)
            status = MessageStatus.RECEIVED
            if outcome is not None:
                status = MessageStatus.FAILED if outcome.error else MessageStatus.PROCESSED
            rows.append(
                {
                    "tenant_id": m.tenant_id,
                    "direction": MessageDirection.IN.value,
                    "wa_id": m.wa_id,
                    "chat": m.chat,
                    "sender": m.sender,
                    "body": m.body,
                    "status": status.value,
                    "error": outcome.error if outcome is not None else None,
                    "attempts": 0,
                    "created_at": m.at if m.at <= now else now,
                    "updated_at": now,
                }
            )
        return rows

    @classmethod
    async def run_many(cls, conn: AsyncConnection, writes: list[InsertInbound]) -> list[Stored]:
        fences = [w.fence for w in writes if w.fence is not None and w.decided]
        held = await _leases_held(conn, fences) if fences else set()
        # each write's outcomes that may be stored with its messages (lease still ours)
        decided = [w.decided if w.fence in held else {} for w in writes]
        rows = [r for w, d in zip(writes, decided, strict=True) for r in w.rows(d)]
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
        replies: list[tuple[Outcome, datetime]] = []
        undo: list[tuple[int, str]] = []
        for w, d in zip(writes, decided, strict=True):
            mine = {(m.tenant_id, m.wa_id) for m in w.items} & new
            new -= mine
            completed: set[tuple[int, str]] = set()
            behind: set[str] = set()  # chats with an older message stored before
            for m in w.items:  # in arrival order
                key = (m.tenant_id, m.wa_id)
                if key not in mine:
                    # Stored before (a redelivery): it may still wait to be processed,
                    # so a newer message of its chat must not be answered ahead of it.
                    behind.add(m.chat)
                elif m.wa_id in d:
                    if m.chat in behind:
                        undo.append(key)
                    else:
                        completed.add(key)
            results.append(Stored(mine, completed))
            replies += (
                (o, w.now) for o in d.values() if (o.tenant_id, o.inbound_wa_id) in completed
            )
        if undo:
            # Rare (a redelivery in the same batch as a newer message of its chat): these
            # were inserted done; back to RECEIVED, processed behind the older message.
            reset = {"status": MessageStatus.RECEIVED.value, "error": None}
            await _update_by_wa_id(conn, MessageDirection.IN, undo, values=reset)
        await _insert_replies(conn, replies)
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
        # one UPDATE per group: same worker, same outcome status and error, one lease
        # epoch per tenant, at most _IN_CHUNK messages
        for group in _lease_groups(writes, key=lambda w: w.outcome.error, most=_IN_CHUNK):
            first = group[0]
            status = (
                MessageStatus.FAILED if first.outcome.error else MessageStatus.PROCESSED
            ).value
            pairs = list(dict.fromkeys((w.fence.tenant_id, w.outcome.inbound_wa_id) for w in group))
            applied |= await _update_by_wa_id(
                conn,
                MessageDirection.IN,
                pairs,
                ML.c.status == MessageStatus.RECEIVED.value,
                _held(group),
                values={
                    "status": status,
                    "error": first.outcome.error,
                    "updated_at": max(w.now for w in group),
                },
                returning=True,
            )
        results: list[bool] = []
        replies: list[tuple[Outcome, datetime]] = []
        for w in writes:
            key = (w.outcome.tenant_id, w.outcome.inbound_wa_id)
            ok = key in applied
            applied.discard(key)  # a duplicate in the same batch reports False, as alone
            results.append(ok)
            if ok:
                replies.append((w.outcome, w.now))
        await _insert_replies(conn, replies)
        return results


async def _insert_replies(conn: AsyncConnection, done: Sequence[tuple[Outcome, datetime]]) -> None:
    """The outbox rows (PENDING) of just completed messages that have a reply: one
    multi-row INSERT. The deterministic reply id makes a second one impossible."""
    rows = [
        {
            "tenant_id": o.tenant_id,
            "direction": MessageDirection.OUT.value,
            "wa_id": reply_wa_id(o.inbound_wa_id),
            "chat": o.chat,
            "sender": "me",
            "body": o.reply,
            "status": MessageStatus.PENDING.value,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for o, now in done
        if o.reply is not None
    ]
    if rows:
        await conn.execute(_insert(conn, ML).on_conflict_do_nothing(), rows)


def complete_inbound_fn(fence: Fence, outcome: Outcome, now: datetime) -> CompleteInbound:
    return CompleteInbound(fence, outcome, now)


async def received_inbound(
    conn: AsyncConnection, tenant_id: int, *, after_id: int, limit: int
) -> list[dict[str, Any]]:
    columns = (ML.c.id, ML.c.wa_id, ML.c.chat, ML.c.sender, ML.c.body, ML.c.created_at)
    return await _rows_after(
        conn,
        columns,
        tenant_id,
        MessageDirection.IN,
        MessageStatus.RECEIVED,
        after_id=after_id,
        limit=limit,
    )
