"""WriteBatcher: groups small writes from every bot of a worker into few transactions.

Each write is a function of a connection; callers ``await batcher.submit(fn)`` and get
its result once the transaction that ran it has COMMITTED — which is what lets the
pipeline ack an inbound message only after it is durably stored. One flush runs up to
`max_batch` writes in one transaction (SQLite has one writer; one commit per message
would cap us at a few hundred messages/s). If the grouped transaction fails, each write is
retried alone so one bad write cannot fail the others. Write functions report domain
conditions (a lost lease, a duplicate) in their return value, never by raising, so they
don't roll back the writes grouped with them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wafleet.logging import get_logger

T = TypeVar("T")
WriteFn = Callable[[AsyncConnection], Awaitable[Any]]
log = get_logger("wafleet.batcher")


@dataclass
class _Op:
    fn: WriteFn
    future: asyncio.Future[Any]


class BatcherClosed(RuntimeError):
    pass


class WriteBatcher:
    def __init__(self, engine: AsyncEngine, *, max_batch: int = 500, name: str = "db-writer"):
        self.engine = engine
        self.max_batch = max_batch
        self.name = name
        self._queue: asyncio.Queue[_Op | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.flushes = 0
        self.writes = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def submit(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        if self._closed:
            raise BatcherClosed("the writer is stopped")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Op(fn, fut))
        result: T = await fut
        return result

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def _run(self) -> None:
        while True:
            op = await self._queue.get()
            if op is None:
                return
            batch = [op]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            await self._flush(batch)
            if stop:
                return

    async def _flush(self, batch: list[_Op]) -> None:
        self.flushes += 1
        self.writes += len(batch)
        try:
            results = await self._run_tx(batch)
        except Exception as err:
            if len(batch) == 1:
                self._fail(batch[0], err)
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
        async with self.engine.begin() as conn:
            return [await op.fn(conn) for op in batch]

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
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
            log.warning("db writer did not flush in time", backlog=self.backlog)
        finally:
            while not self._queue.empty():
                op = self._queue.get_nowait()
                if op is not None:
                    self._fail(op, BatcherClosed("the writer stopped"))
