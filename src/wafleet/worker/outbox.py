"""The durable outbox of one tenant: replies wait in ``message_logs`` as PENDING rows
(committed with the outcome of the message they answer) and go out while the engine is
logged in, with their stable ids, in id order per chat; each is marked SENT once the
engine took it, and receipts move it on to DELIVERED/READ.

Two ways to find what to send: replies this process just committed are sent from memory
(`replied`, in commit order — the hot path); a database pass (`_scan_pending`) runs first
whenever memory may not hold everything PENDING: on connect, after a failed send or SENT
mark, when someone else queued rows (`wake(scan=True)`). Sends go in windows whose round
trips overlap (`Engine.send_many`). A crash between send and mark resends under the same
id, which the receiver records once.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from wafleet.engines.base import Engine, EngineError, NotConnected, OutgoingText
from wafleet.logging import get_logger
from wafleet.worker import store
from wafleet.worker.batcher import BatcherClosed, WriteBatcher
from wafleet.worker.clock import Clock
from wafleet.worker.store import Fence

OUTBOX_BATCH = 200
# Replies sent before waiting for the engine's answers: one round trip per window instead
# of one per message (a tenant's outbox was bound by the round trip, measured by bench).
SEND_WINDOW = 64
MAX_SEND_FAILURES = 5
RETRY_DELAY = 1.0


class _Pass(Enum):
    DONE = "done"  # everything known was sent
    GONE = "gone"  # the engine is not connected: the loop ends
    RETRY = "retry"  # a send failed: stopped there, try again after RETRY_DELAY


@dataclass(frozen=True)
class _Out:
    wa_id: str
    chat: str
    body: str


class Outbox:
    def __init__(self, *, slug: str, fence: Fence, batcher: WriteBatcher, clock: Clock) -> None:
        self.slug = slug
        self.fence = fence
        self.batcher = batcher
        self.clock = clock
        self.log = get_logger("wafleet.outbox", tenant=slug)
        self.engine: Engine | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Rows (by wa_id) sent whose SENT mark is not committed yet: sending goes on
        # without waiting for the mark (a batch commit per pass), and skips these rows if
        # a database pass reads them still PENDING. A failed mark puts them back.
        self._marking: set[str] = set()
        # Replies just committed by this process, in commit (= id) order.
        self._fresh: deque[_Out] = deque()
        self._scan = True
        # SENT marks the database refused, to submit again (never a resend).
        self._unmarked: list[tuple[store.MarkSent | store.MarkSentByWaId, list[str]]] = []
        self.sent = 0

    def connected(self, engine: Engine) -> None:
        """The engine is logged in: start sending."""
        self.engine = engine
        self._scan = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name=f"outbox:{self.slug}")
            self._task.add_done_callback(self._loop_ended)
        self._wake.set()

    async def disconnected(self) -> None:
        self.engine = None
        self._fresh.clear()
        self._scan = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def wake(self, *, scan: bool) -> None:
        if scan:
            self._scan = True
        self._wake.set()

    def replied(self, wa_id: str, chat: str, reply: str | None, *, committed: bool) -> None:
        """An outcome was stored (``committed``: by this process, just now): send its
        reply, if any."""
        if reply is None:
            return
        if (
            committed
            and self.engine is not None
            and self._task is not None
            and not self._task.done()
        ):
            # committed: the reply row exists, PENDING, after every earlier one
            self._fresh.append(_Out(store.reply_wa_id(wa_id), chat, reply))
        else:
            self._scan = True
        self._wake.set()

    @property
    def marking(self) -> int:
        """Sent messages whose SENT mark has not committed yet."""
        return len(self._marking)

    async def _loop(self) -> None:
        failures: dict[int, int] = {}
        self._retry_marks()  # marks a previous connection could not commit
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                result = await self._send_pending(failures)
            except (OSError, SQLAlchemyError) as err:
                # Database unavailable: this loop is the only sender while connected, so
                # it must outlive the outage (unmarked rows are resent under the same id).
                self.log.warning("sending the outbox failed, retrying", error=str(err)[:200])
                await self.clock.sleep(0.5)
                self._wake.set()
                continue
            if result is _Pass.GONE:
                return
            if result is _Pass.RETRY:
                # A send failed: the rest waits (a chat's replies keep their order) and
                # the database pass tries again in a while, even if nothing else happens.
                await self.clock.sleep(RETRY_DELAY)
                self._scan = True
                self._wake.set()
            if self._unmarked:
                await self.clock.sleep(0.5)  # the database failed them a moment ago
                self._retry_marks()

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.log.error("the outbox stopped on an error", error=repr(task.exception()))

    async def _send_pending(self, failures: dict[int, int]) -> _Pass:
        """Send what is PENDING, in id order."""
        if self._scan:
            self._scan = False
            self._fresh.clear()  # all committed already: the database pass sees them
            try:
                result = await self._scan_pending(failures)
            except BaseException:
                self._scan = True
                raise
            if result is not _Pass.DONE:
                self._scan = True
                return result
        return await self._send_fresh()

    async def _send_fresh(self) -> _Pass:
        engine = self.engine
        if engine is None:
            return _Pass.GONE
        while self._fresh:
            window: list[_Out] = []
            while self._fresh and len(window) < SEND_WINDOW:
                out = self._fresh.popleft()
                if out.wa_id not in self._marking:
                    window.append(out)
            results = await engine.send_many(
                [OutgoingText(o.chat, o.body, o.wa_id) for o in window]
            )
            failed = self._settle([(None, o.wa_id) for o in window], results)
            if failed is not None:
                # What did not go stays PENDING: the database pass sends it again, in
                # order, and counts its failures; memory no longer holds everything.
                self._fresh.clear()
                self._scan = True
                return _Pass.GONE if isinstance(failed[1], NotConnected) else _Pass.RETRY
        return _Pass.DONE

    async def _scan_pending(self, failures: dict[int, int]) -> _Pass:
        """One pass over the PENDING outbox, stopping at a failed send."""
        after = 0
        while True:
            engine = self.engine
            if engine is None:
                return _Pass.GONE
            async with self.batcher.engine.connect() as conn:
                rows = await store.pending_outbox(
                    conn, self.fence.tenant_id, after_id=after, limit=OUTBOX_BATCH
                )
            if not rows:
                return _Pass.DONE
            todo = [r for r in rows if r["wa_id"] not in self._marking]  # else: mark on its way
            for start in range(0, len(todo), SEND_WINDOW):
                window = todo[start : start + SEND_WINDOW]
                results = await engine.send_many(
                    [OutgoingText(r["chat"], r["body"], r["wa_id"]) for r in window]
                )
                for r, err in zip(window, results, strict=True):
                    if err is None:
                        failures.pop(r["id"], None)
                failed = self._settle([(r["id"], r["wa_id"]) for r in window], results)
                if failed is None:
                    continue
                row_id, err = failed
                if isinstance(err, NotConnected):
                    return _Pass.GONE
                assert row_id is not None
                n = failures[row_id] = failures.get(row_id, 0) + 1
                if n < MAX_SEND_FAILURES:
                    return _Pass.RETRY
                failures.pop(row_id, None)
                await self.batcher.submit(
                    store.mark_out_failed_fn(
                        self.fence, row_id, f"send failed: {err}", self.clock.now()
                    )
                )
                return _Pass.RETRY  # the rest of its window goes on the next pass
            after = rows[-1]["id"]
            if len(rows) < OUTBOX_BATCH:
                return _Pass.DONE

    def _settle(
        self, window: list[tuple[int | None, str]], results: list[EngineError | None]
    ) -> tuple[int | None, EngineError] | None:
        """Queue the SENT marks of what went out (after a failure too: it is on the wire)
        and return the first failure, as (row id, error), if any."""
        sent = [key for key, err in zip(window, results, strict=True) if err is None]
        if sent:
            ids = [row_id for row_id, _ in sent if row_id is not None]
            self._mark_sent(ids, [wa_id for _, wa_id in sent])
        return next(
            ((key[0], err) for key, err in zip(window, results, strict=True) if err is not None),
            None,
        )

    def _mark_sent(self, ids: list[int], wa_ids: list[str]) -> None:
        """Queue the SENT mark of rows (by row id if known, else by wa_id) without
        waiting for its commit: the next send need not sit behind it. Until it commits
        the rows stay PENDING (a crash resends them under the same stable ids, which the
        receiver records once)."""
        now = self.clock.now()
        write: store.MarkSent | store.MarkSentByWaId = (
            store.mark_sent_fn(self.fence, ids, now)
            if ids
            else store.MarkSentByWaId(self.fence, wa_ids, now)
        )
        fut = self.batcher.submit_nowait(write, lazy=True)  # may raise: before any state
        self._marking.update(wa_ids)
        self.sent += len(wa_ids)
        fut.add_done_callback(functools.partial(self._marked, write, wa_ids))

    def _marked(
        self, write: store.MarkSent | store.MarkSentByWaId, wa_ids: list[str], fut: Any
    ) -> None:
        if fut.cancelled() or fut.exception() is not None:
            # They went out: retry the mark, not the send (an engine that cannot send
            # under our id would deliver them twice). They stay in `_marking` meanwhile.
            err = None if fut.cancelled() else fut.exception()
            self.log.warning("marking sent messages failed", count=len(wa_ids), error=repr(err))
            self._unmarked.append((write, wa_ids))
            self._wake.set()
            return
        self._marking.difference_update(wa_ids)

    def _retry_marks(self) -> None:
        pending, self._unmarked = self._unmarked, []
        for write, wa_ids in pending:
            try:
                fut = self.batcher.submit_nowait(write, lazy=True)
            except BatcherClosed:
                return  # shutting down: the rows stay PENDING, resent after a restart
            fut.add_done_callback(functools.partial(self._marked, write, wa_ids))
