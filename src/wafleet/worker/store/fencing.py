"""The lease fence every write of the worker's store goes through, and what they share.

A `Fence` names the worker and the lease epoch a bot was started with. Every write a bot
makes to its tenant's rows is conditioned on the lease still being (worker, epoch): a
paused or partitioned worker that wakes up after its lease moved on writes nothing.
Write functions return booleans instead of raising, so they can share a batch.

The helpers below serve the merged writes (`MergeableWrite`) of the other modules: they
group a batch's writes by lease, test the lease in SQL, and update message rows by
(tenant id, wa_id) in chunks of `_IN_CHUNK`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import Table, exists, select, tuple_, update
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

_IN_CHUNK = 500  # messages per merged UPDATE: far below SQLite's bound-parameter limit


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


def _insert(conn: AsyncConnection, table: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


class _Fenced(Protocol):
    @property
    def fence(self) -> Fence: ...


_F = TypeVar("_F", bound=_Fenced)


def _no_key(_: object) -> None:
    return None


def _lease_groups(
    writes: Sequence[_F],
    *,
    key: Callable[[_F], Hashable] = _no_key,
    most: int | None = None,
) -> list[list[_F]]:
    """Writes one fenced UPDATE can serve: same worker (and same ``key``), one lease
    epoch per tenant (a bot restarted on a new epoch goes apart), at most ``most`` of
    them. Each write joins the first group it fits, in submission order."""
    groups: list[tuple[tuple[str, Hashable], dict[int, int], list[_F]]] = []
    for w in writes:
        gkey = (w.fence.worker_id, key(w))
        fits = (
            g
            for g in groups
            if g[0] == gkey
            and g[1].get(w.fence.tenant_id, w.fence.epoch) == w.fence.epoch
            and (most is None or len(g[2]) < most)
        )
        group = next(fits, None)
        if group is None:
            group = (gkey, {}, [])
            groups.append(group)
        group[1][w.fence.tenant_id] = w.fence.epoch
        group[2].append(w)
    return [members for _, _, members in groups]


async def _leases_held(conn: AsyncConnection, fences: Sequence[Fence]) -> set[Fence]:
    """The fences whose lease is still (worker, epoch), read in one SELECT per
    `_IN_CHUNK` tenants — locked on PostgreSQL, so none can move before the caller's
    writes commit; on SQLite a lease changed by another process makes the write
    transaction fail instead."""
    tenants = sorted({f.tenant_id for f in fences})
    current: set[Fence] = set()
    for start in range(0, len(tenants), _IN_CHUNK):
        q = select(TL.c.tenant_id, TL.c.worker_id, TL.c.epoch).where(
            TL.c.tenant_id.in_(tenants[start : start + _IN_CHUNK])
        )
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        current.update(
            Fence(str(w), int(t), int(e)) for t, w, e in (await conn.execute(q)).all() if w
        )
    return {f for f in fences if f in current}


def _held(group: Sequence[_Fenced]) -> Any:
    """SQL condition: the row's tenant is still leased to the group's worker at its epoch."""
    leases = list(dict.fromkeys((w.fence.tenant_id, w.fence.epoch) for w in group))
    return exists().where(
        TL.c.tenant_id == ML.c.tenant_id,
        TL.c.worker_id == group[0].fence.worker_id,
        tuple_(TL.c.tenant_id, TL.c.epoch).in_(leases),
    )


async def _update_by_wa_id(
    conn: AsyncConnection,
    direction: MessageDirection,
    pairs: Sequence[tuple[int, str]],
    *where: Any,
    values: Mapping[str, Any],
    returning: bool = False,
) -> set[tuple[int, str]]:
    """UPDATE the ``direction`` messages of these (tenant id, wa_id) pairs that also meet
    ``where``: one statement per `_IN_CHUNK` pairs. Returns the pairs updated when asked
    (``returning``), else an empty set."""
    updated: set[tuple[int, str]] = set()
    for start in range(0, len(pairs), _IN_CHUNK):
        chunk = pairs[start : start + _IN_CHUNK]
        stmt = (
            update(ML)
            .where(
                # the two plain INs let the (tenant, direction, wa_id) index find the
                # rows; the row-value IN keeps exactly the pairs asked for
                ML.c.tenant_id.in_(sorted({t for t, _ in chunk})),
                ML.c.direction == direction.value,
                ML.c.wa_id.in_(sorted({wa for _, wa in chunk})),
                tuple_(ML.c.tenant_id, ML.c.wa_id).in_(chunk),
                *where,
            )
            .values(values)
        )
        if returning:
            res = await conn.execute(stmt.returning(ML.c.tenant_id, ML.c.wa_id))
            updated.update((int(r[0]), str(r[1])) for r in res.all())
        else:
            await conn.execute(stmt)
    return updated


async def _rows_after(
    conn: AsyncConnection,
    columns: Sequence[Any],
    tenant_id: int,
    direction: MessageDirection,
    status: MessageStatus,
    *,
    after_id: int,
    limit: int,
) -> list[dict[str, Any]]:
    """A tenant's messages of one direction and status, by id after ``after_id``."""
    rows = await conn.execute(
        select(*columns)
        .where(
            ML.c.tenant_id == tenant_id,
            ML.c.direction == direction.value,
            ML.c.status == status.value,
            ML.c.id > after_id,
        )
        .order_by(ML.c.id)
        .limit(limit)
    )
    return [dict(r._mapping) for r in rows]
