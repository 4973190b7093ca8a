"""WriteBatcher: groups small writes from every bot of a worker into few transactions.

Each write is a function of a connection; callers ``await batcher.submit(fn)`` and get
its result once the transaction that ran it has COMMITTED — which is what lets the
pipeline ack an inbound message only after it is durably stored. One flush runs up to
`max_batch` writes in one transaction (SQLite has one writer; one commit per message
would cap us at a few hundred messages/s). If the grouped transaction fails, each write is
retried alone so one bad write cannot fail the others. Write functions report domain
conditions (a lost lease, a duplicate) in their return value, never by raising, so they
don't roll back the writes grouped with them.

Writes nobody waits on (SENT marks, receipts) may be submitted ``lazy``: they wait
`lazy_delay` and then go together, ahead of the backlog, so they don't add statements to
every transaction on a message's path (under a steady load each flush carried marks and
receipts besides the inserts, doubling its statements — and a waiting message's time).

A write may also be a `MergeableWrite`: all writes of one such class in a batch run as one
set of statements (``run_many``), at the place of the first of them — under load that
turns 2 statements per message into 2 per batch (measured with ``wafleet bench pipeline``:
the per-statement round trip to the database thread was the worker's top cost).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wafleet.logging import get_logger

T = TypeVar("T")
WriteFn = Callable[[AsyncConnection], Awaitable[Any]]
log = get_logger("wafleet.batcher")


class MergeableWrite:
    """A write function that can run together with the others of its class in a batch.

    Subclasses implement ``run_many`` (results in the order of ``writes``) and must only
    touch rows that no other write of the same batch depends on, since the merged
    statements run at the position of the class's first write in the batch.
    """

    async def __call__(self, conn: AsyncConnection) -> Any:
        return (await self.run_many(conn, [self]))[0]

    @classmethod
    async def run_many(cls, conn: AsyncConnection, writes: list[Any]) -> list[Any]:
        raise NotImplementedError


@dataclass
class _Op:
    fn: WriteFn
    future: asyncio.Future[Any]


def _connection_error(err: BaseException) -> bool:
    return isinstance(err, OSError | ConnectionError | TimeoutError) or bool(
        getattr(err, "connection_invalidated", False)
    )


class BatcherClosed(RuntimeError):
    pass


class WriteBatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_batch: int = 500,
        name: str = "db-writer",
        lazy_delay: float = 0.05,
    ):
        self.engine = engine
        self.max_batch = max_batch
        self.name = name
        self.lazy_delay = lazy_delay
        self._pending: deque[_Op] = deque()
        self._lazy: deque[tuple[float, _Op]] = deque()  # (queued at, op), oldest first
        # Urgent writes (the heartbeat) go into the next transaction ahead of the backlog:
        # a heartbeat starved by a message burst would make the worker self-fence.
        self._urgent: deque[_Op] = deque()
        self._work = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # The writer's own connection, kept between batches: checking one out of the pool
        # per batch made every write wait behind the bots' reads for a pooled connection
        # (hundreds of ms at 500 msgs/s over 50 tenants, measured by wafleet bench).
        self._conn: AsyncConnection | None = None
        self.flushes = 0
        self.writes = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def submit(
        self, fn: Callable[[AsyncConnection], Awaitable[T]], *, urgent: bool = False
    ) -> T:
        result: T = await self.submit_nowait(fn, urgent=urgent)
        return result

    def submit_nowait(
        self,
        fn: Callable[[AsyncConnection], Awaitable[T]],
        *,
        urgent: bool = False,
        lazy: bool = False,
    ) -> asyncio.Future[T]:
        """Queue a write now (synchronously, so writes queued together share a batch);
        the future resolves once its transaction has committed."""
        if self._closed:
            raise BatcherClosed("the writer is stopped")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        op = _Op(fn, fut)
        if lazy and not urgent:
            self._lazy.append((loop.time(), op))
            if len(self._lazy) > 1 and len(self._lazy) < self.max_batch:
                return fut  # the writer already waits for the oldest one to be due
        else:
            (self._urgent if urgent else self._pending).append(op)
        self._work.set()
        return fut

    @property
    def backlog(self) -> int:
        return len(self._pending) + len(self._urgent) + len(self._lazy)

    def _lazy_wait(self, now: float) -> float | None:
        """Seconds until the oldest lazy write is due (0: due now); None if there is none."""
        if not self._lazy:
            return None
        if self._stopping or len(self._lazy) >= self.max_batch:
            return 0.0
        return max(0.0, self._lazy[0][0] + self.lazy_delay - now)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            lazy_wait = self._lazy_wait(loop.time())
            if not self._urgent and not self._pending and lazy_wait != 0.0:
                if self._stopping and lazy_wait is None:
                    return
                self._work.clear()
                if lazy_wait is None:
                    await self._work.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._work.wait(), lazy_wait)
                continue
            batch: list[_Op] = []
            while self._urgent and len(batch) < self.max_batch:
                batch.append(self._urgent.popleft())
            if lazy_wait == 0.0:
                # Due: they go now, ahead of the backlog (a sustained backlog must not
                # starve them), one merged statement per kind for the delay's worth.
                while self._lazy and len(batch) < self.max_batch:
                    batch.append(self._lazy.popleft()[1])
            while self._pending and len(batch) < self.max_batch:
                batch.append(self._pending.popleft())
            await self._flush(batch)

    async def _flush(self, batch: list[_Op]) -> None:
        self.flushes += 1
        self.writes += len(batch)
        try:
            results = await self._run_tx(batch)
        except Exception as err:
            if len(batch) == 1 or _connection_error(err):
                # one write, or the database itself is unreachable: retrying each write
                # alone would only multiply the wait
                for op in batch:
                    self._fail(op, err)
                return
            # Isolate: a constraint error or a bad value in one write must not fail the rest.
            for op in batch:
                try:
                    (res,) = await self._run_tx([op])
                except Exception as one_err:
                    self._fail(op, one_err)
                else:
                    if not op.future.done():
                        op.future.set_result(res)
            return
        for op, res in zip(batch, results, strict=True):
            if not op.future.done():
                op.future.set_result(res)

    async def _run_tx(self, batch: list[_Op]) -> list[Any]:
        results: list[Any] = [None] * len(batch)
        # Plan: plain writes in order; each mergeable class once, where it first appears.
        plan: list[int | type[MergeableWrite]] = []
        groups: dict[type[MergeableWrite], list[int]] = {}
        for i, op in enumerate(batch):
            if isinstance(op.fn, MergeableWrite):
                cls = type(op.fn)
                if cls not in groups:
                    groups[cls] = []
                    plan.append(cls)
                groups[cls].append(i)
            else:
                plan.append(i)
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._conn = await self.engine.connect()
        try:
            await self._run_plan(conn, batch, plan, groups, results)
        except BaseException:
            # The connection may be what failed (server restart, network): a fresh one next.
            await self._drop_connection()
            raise
        return results

    async def _run_plan(
        self,
        conn: AsyncConnection,
        batch: list[_Op],
        plan: list[int | type[MergeableWrite]],
        groups: dict[type[MergeableWrite], list[int]],
        results: list[Any],
    ) -> None:
        async with conn.begin():
            if conn.dialect.name == "sqlite":
                # Take SQLite's write lock now: the driver would only begin at the first
                # write, so a lease read earlier in the batch could be stale by the time
                # the rows it fences are written (another process released the lease).
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            for step in plan:
                if isinstance(step, int):
                    results[step] = await batch[step].fn(conn)
                    continue
                idx = groups[step]
                merged = await step.run_many(conn, [batch[i].fn for i in idx])
                for i, res in zip(idx, merged, strict=True):
                    results[i] = res

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception as err:  # already broken: nothing more to release
                log.debug("closing the writer's connection failed", error=repr(err))

    @staticmethod
    def _fail(op: _Op, err: BaseException) -> None:
        if not op.future.done():
            op.future.set_exception(err)

    async def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued, then stop."""
        if self._closed:
            return
        self._closed = True
        if self._task is None:
            return
        self._stopping = True
        self._work.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
            log.warning("db writer did not flush in time", backlog=self.backlog)
        finally:
            for queue in (self._urgent, self._pending):
                while queue:
                    self._fail(queue.popleft(), BatcherClosed("the writer stopped"))
            while self._lazy:
                self._fail(self._lazy.popleft()[1], BatcherClosed("the writer stopped"))
            await self._drop_connection()
