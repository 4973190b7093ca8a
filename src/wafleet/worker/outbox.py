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
from collections import deque
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from wafleet.engines.base import Engine, NotConnected, OutgoingText
from wafleet.logging import get_logger
from wafleet.worker import store
from wafleet.worker.batcher import WriteBatcher
from wafleet.worker.clock import Clock
from wafleet.worker.store import Fence

OUTBOX_BATCH = 200
# Replies sent before waiting for the engine's answers: one round trip per window instead
# of one per message (a tenant's outbox was bound by the round trip, measured by bench).
SEND_WINDOW = 64
MAX_SEND_FAILURES = 5


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
        self.sent = 0

    def connected(self, engine: Engine) -> None:
        """The engine is logged in: start sending."""
        self.engine = engine
        self._scan = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name=f"outbox:{self.slug}")
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
        if committed and self.engine is not None:
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
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                if not await self._send_pending(failures):
                    return
            except (OSError, SQLAlchemyError) as err:
                # Database unavailable: this loop is the only sender while connected, so
                # it must outlive the outage (unmarked rows are resent under the same id).
                self.log.warning("sending the outbox failed, retrying", error=str(err)[:200])
                await self.clock.sleep(0.5)
                self._wake.set()

    async def _send_pending(self, failures: dict[int, int]) -> bool:
        """Send what is PENDING; False when the engine is gone."""
        if self._scan:
            self._scan = False
            self._fresh.clear()  # all committed already: the database pass sees them
            try:
                if not await self._scan_pending(failures):
                    self._scan = True
                    return False
            except BaseException:
                self._scan = True
                raise
            if failures:
                self._scan = True  # retry the failed rows on the next wake-up
                return True
        return await self._send_fresh()

    async def _send_fresh(self) -> bool:
        engine = self.engine
        if engine is None:
            return False
        while self._fresh:
            window: list[_Out] = []
            while self._fresh and len(window) < SEND_WINDOW:
                out = self._fresh.popleft()
                if out.wa_id not in self._marking:
                    window.append(out)
            results = await engine.send_many(
                [OutgoingText(o.chat, o.body, o.wa_id) for o in window]
            )
            sent = [o.wa_id for o, err in zip(window, results, strict=True) if err is None]
            if sent:
                self._mark_sent([], sent)
            if any(err is not None for err in results):
                # What did not go stays PENDING: the database pass resends it in order
                # (and counts its failures); memory may no longer hold everything.
                self._fresh.clear()
                self._scan = True
                return not any(isinstance(err, NotConnected) for err in results)
        return True

    async def _scan_pending(self, failures: dict[int, int]) -> bool:
        """One pass over the PENDING outbox; False when the engine is gone."""
        after = 0
        while True:
            engine = self.engine
            if engine is None:
                return False
            async with self.batcher.engine.connect() as conn:
                rows = await store.pending_outbox(
                    conn, self.fence.tenant_id, after_id=after, limit=OUTBOX_BATCH
                )
            if not rows:
                return True
            todo = [r for r in rows if r["wa_id"] not in self._marking]  # else: mark on its way
            for start in range(0, len(todo), SEND_WINDOW):
                window = todo[start : start + SEND_WINDOW]
                results = await engine.send_many(
                    [OutgoingText(r["chat"], r["body"], r["wa_id"]) for r in window]
                )
                ok = [r for r, err in zip(window, results, strict=True) if err is None]
                if ok:
                    self._mark_sent([r["id"] for r in ok], [r["wa_id"] for r in ok])
                for r, err in zip(window, results, strict=True):
                    if err is None:
                        failures.pop(r["id"], None)
                        continue
                    if isinstance(err, NotConnected):
                        return False
                    n = failures[r["id"]] = failures.get(r["id"], 0) + 1
                    if n >= MAX_SEND_FAILURES:
                        failures.pop(r["id"], None)
                        await self.batcher.submit(
                            store.mark_out_failed_fn(
                                self.fence, r["id"], f"send failed: {err}", self.clock.now()
                            )
                        )
            after = rows[-1]["id"]
            if len(rows) < OUTBOX_BATCH:
                return True

    def _mark_sent(self, ids: list[int], wa_ids: list[str]) -> None:
        """Queue the SENT mark of rows (by row id if known, else by wa_id) without
        waiting for its commit: the next send need not sit behind it. Until it commits
        the rows stay PENDING (a crash resends them under the same stable ids, which the
        receiver records once)."""
        self.sent += len(wa_ids)
        self._marking.update(wa_ids)
        now = self.clock.now()
        write: store.MarkSent | store.MarkSentByWaId = (
            store.mark_sent_fn(self.fence, ids, now)
            if ids
            else store.MarkSentByWaId(self.fence, wa_ids, now)
        )
        fut = self.batcher.submit_nowait(write, lazy=True)
        fut.add_done_callback(lambda f: self._marked(wa_ids, f))

    def _marked(self, wa_ids: list[str], fut: asyncio.Future[None]) -> None:
        self._marking.difference_update(wa_ids)
        if fut.cancelled() or fut.exception() is not None:
            # Still PENDING in the database: the outbox sends them again (same ids).
            err = None if fut.cancelled() else fut.exception()
            self.log.warning("marking sent messages failed", count=len(wa_ids), error=repr(err))
            self._scan = True
            self._wake.set()
