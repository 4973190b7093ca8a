"""A bot's session row, its timeline events and its tenant's status: the fenced write of a
session transition, and the reads a bot restores itself from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from wafleet.worker.batcher import MergeableWrite
from wafleet.worker.store.fencing import CE, TN, WS, Fence, _leases_held


@dataclass(frozen=True)
class EventRecord:
    kind: str
    from_state: str | None = None
    to_state: str | None = None
    cause: str | None = None
    detail: str | None = None


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
        held = await _leases_held(conn, [w.fence for w in writes])
        ok = [w.fence in held for w in writes]
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
