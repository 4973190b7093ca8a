"""The durable message pipeline of one tenant.

inbound:  engine event → buffered → stored in one batched INSERT (duplicates by WhatsApp
          id skipped) → COMMIT → ack to the engine → per-chat queue (in order)
process:  rules or webhook → in ONE transaction: inbound PROCESSED/FAILED + reply row
          PENDING in the outbox (deterministic id, so a replay cannot make a 2nd reply).
          A message a rule answers, with nothing older of its chat in flight, is
          decided before it is stored: its outcome commits in the message's own
          transaction (one commit on its path), and it never enters a chat queue.
outbox:   (`wafleet.worker.outbox`) while connected, PENDING rows are sent in id order
          with their stable ids and marked SENT; receipts move them to DELIVERED/READ
resume:   on start (and whenever messages were deferred by a full chat queue) RECEIVED
          inbound rows are re-queued; PENDING outbound rows go out on the next connect.
Nothing is acknowledged before it is stored; nothing is replied twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from wafleet.engines.base import (
    Engine,
    EngineError,
    IncomingMessage,
    Receipt,
)
from wafleet.logging import get_logger
from wafleet.worker import store
from wafleet.worker.batcher import WriteBatcher
from wafleet.worker.chat_queue import ChatQueueManager
from wafleet.worker.clock import Clock
from wafleet.worker.outbox import Outbox
from wafleet.worker.rules import BotConfig, RuleMatcher
from wafleet.worker.store import Fence, Inbound, Outcome
from wafleet.worker.webhook import WebhookClient, WebhookFailed, WebhookMessage

SWEEP_BATCH = 500


@dataclass(frozen=True)
class _Item:
    wa_id: str
    chat: str
    sender: str
    text: str
    at: Any


class TenantPipeline:
    def __init__(
        self,
        *,
        slug: str,
        fence: Fence,
        batcher: WriteBatcher,
        clock: Clock,
        webhooks: WebhookClient,
        chat_queue_max: int,
        on_lease_lost: Callable[[], None],
    ) -> None:
        self.slug = slug
        self.fence = fence
        self.batcher = batcher
        self.clock = clock
        self.webhooks = webhooks
        self.on_lease_lost = on_lease_lost
        self.log = get_logger("wafleet.pipeline", tenant=slug)
        self.queues: ChatQueueManager[_Item] = ChatQueueManager(
            self._process, max_per_chat=chat_queue_max, name=f"chat:{slug}"
        )
        self.matcher = RuleMatcher(BotConfig())
        self.config = BotConfig()
        # the engine that receives acks (set as soon as it exists, before login)
        self.ack_engine: Engine | None = None
        self._inflight: set[str] = set()
        # Chats with stored messages waiting for the sweep (their queue was full): a newer
        # message of such a chat must queue behind them, i.e. go through the sweep too,
        # or it would overtake them. Until the start-up sweep has re-queued what an
        # earlier run left, every chat is in that situation (`_holding`).
        self._deferred_chats: set[str] = set()
        self._holding = True
        self._waiting: dict[str, str] = {}  # wa_id → chat: deferred, not yet seen by a sweep
        self._deferred_event = asyncio.Event()
        self._in_buf: list[IncomingMessage] = []
        self._rc_buf: list[tuple[str, str]] = []
        self._buf_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.outbox = Outbox(slug=slug, fence=fence, batcher=batcher, clock=clock)
        self.received = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._writer_loop(), name=f"inbound:{self.slug}"))
        self._tasks.append(asyncio.create_task(self._sweep_loop(), name=f"sweep:{self.slug}"))

    def set_config(self, config: BotConfig) -> None:
        self.config = config
        self.matcher = RuleMatcher(config)

    def connected(self, engine: Engine) -> None:
        """The engine is logged in: start sending the outbox."""
        self.outbox.connected(engine)

    async def disconnected(self) -> None:
        await self.outbox.disconnected()

    async def stop(self, drain_timeout: float = 5.0) -> None:
        try:
            await self.queues.drain(drain_timeout)
            await self.disconnected()
            await self._flush_buffers()  # raises while the database is down
        finally:
            # Always reap our tasks: a writer loop left running after its bot stopped
            # would store messages later, under a lease that may be someone else's.
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
            await self.queues.close()

    # ------------------------------------------------------------------ engine events
    def on_incoming(self, ev: IncomingMessage) -> None:
        self._in_buf.append(ev)
        self._buf_event.set()

    def on_receipt(self, ev: Receipt) -> None:
        self._rc_buf.append((ev.message_id, ev.status))
        self._buf_event.set()

    def wake_outbox(self) -> None:
        self.outbox.wake(scan=True)  # rows may have been queued by someone else

    @property
    def sent(self) -> int:
        return self.outbox.sent

    @property
    def queue_depth(self) -> int:
        return self.queues.depth

    # ------------------------------------------------------------------ inbound
    async def _writer_loop(self) -> None:
        while True:
            await self._buf_event.wait()
            self._buf_event.clear()
            try:
                await self._flush_buffers()
            except (OSError, SQLAlchemyError) as err:
                # Database unavailable: nothing was acked, keep the messages and retry.
                self.log.warning("storing inbound failed, retrying", error=str(err)[:200])
                await self.clock.sleep(0.5)
                self._buf_event.set()

    async def _flush_buffers(self) -> None:
        batch, self._in_buf = self._in_buf, []
        receipts, self._rc_buf = self._rc_buf, []
        try:
            if receipts:
                # Nobody waits for a receipt: it goes in the batcher's lazy lane, off the
                # inbound messages' path. One that fails is applied again with the next
                # flush (harmless: a receipt only moves a message forward).
                fut = self.batcher.submit_nowait(
                    store.apply_receipts_fn(self.fence.tenant_id, receipts, self.clock.now()),
                    lazy=True,
                )
                fut.add_done_callback(lambda f: self._receipts_done(receipts, f))
                receipts = []
            await self._store(batch)
        except BaseException:
            self._in_buf[:0] = batch
            self._rc_buf[:0] = receipts
            raise

    def _receipts_done(self, receipts: list[tuple[str, str]], fut: asyncio.Future[None]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self._rc_buf[:0] = receipts

    async def _store(self, batch: list[IncomingMessage]) -> None:
        if not batch:
            return
        # drop duplicates inside the batch itself (a redelivery racing the first copy)
        unique: dict[str, IncomingMessage] = {}
        for ev in batch:
            unique.setdefault(ev.id, ev)
        tid = self.fence.tenant_id
        items = [Inbound(tid, ev.id, ev.chat, ev.sender, ev.text, ev.at) for ev in unique.values()]
        decided = self._decide_early(unique.values())
        stored = await self.batcher.submit(
            store.insert_inbound_fn(items, self.clock.now(), fence=self.fence, decided=decided)
        )
        # Stored (or already stored before): now WhatsApp may forget them.
        engine = self.ack_engine
        for ev in unique.values():
            if engine is not None:
                try:
                    await engine.ack(ev.id)
                except (EngineError, ConnectionError, OSError):
                    break  # unacked messages are redelivered after the reconnect
        self.received += len(stored.new)
        for ev in unique.values():
            key = (tid, ev.id)
            if key in stored.completed:
                self.outbox.replied(ev.id, ev.chat, decided[ev.id].reply, committed=True)
            elif key in stored.new:
                # (a decided message whose completion the fence refused goes this way
                # too: its processing finds the lease gone)
                self._enqueue_new(_Item(ev.id, ev.chat, ev.sender, ev.text, ev.at))
            elif ev.id not in self._inflight:
                # Stored before but not queued here: a redelivery of a message that may
                # still be RECEIVED (stored by an earlier bot of this tenant after our
                # start-up sweep). Let the sweep look; its chat queues behind it.
                self._deferred_chats.add(ev.chat)
                self._deferred_event.set()

    def _decide_early(self, events: Iterable[IncomingMessage]) -> dict[str, Outcome]:
        """Outcomes that can commit with the messages themselves: a rule answers (or no
        webhook is set), and nothing older of the chat is queued, deferred or undecided,
        so answering now keeps the chat's order. The rest go through the chat queues."""
        if self._holding:
            return {}
        decided: dict[str, Outcome] = {}
        later: set[str] = set()  # chats with an earlier message that is not decided
        tid = self.fence.tenant_id
        for ev in events:
            chat = ev.chat
            if chat in later or chat in self._deferred_chats or self.queues.busy(chat):
                later.add(chat)
                continue
            reply = self.matcher.reply_for(ev.text, ev.sender, chat)
            if reply is None and self.config.webhook is not None:
                later.add(chat)
                continue
            decided[ev.id] = Outcome(tid, ev.id, chat, reply)
        return decided

    def _enqueue_new(self, item: _Item) -> None:
        """A just-stored message: queue it, unless older ones of its chat wait in the DB."""
        if item.wa_id in self._inflight:
            return  # a sweep already queued it while we were acking
        if self._holding or item.chat in self._deferred_chats or not self._enqueue(item):
            self._waiting[item.wa_id] = item.chat
            self._deferred_chats.add(item.chat)
            self._deferred_event.set()

    def _enqueue(self, item: _Item) -> bool:
        """Queue a stored message; False when its chat's queue is full."""
        if item.wa_id in self._inflight:
            return True
        if self.queues.enqueue(item.chat, item):
            self._inflight.add(item.wa_id)
            return True
        return False

    async def _sweep_loop(self) -> None:
        """Re-queue stored-but-unprocessed inbound rows: at start (crash recovery) and
        after a full chat queue deferred some."""
        self._deferred_event.set()  # the start-up sweep
        while True:
            await self._deferred_event.wait()
            # let the chat queues drain a little before taking more from the database
            while self.queues.depth >= self.queues.max_per_chat:
                await self.clock.sleep(0.2)
            self._deferred_event.clear()
            try:
                await self.sweep()
            except (OSError, SQLAlchemyError) as err:
                # Database unavailable: deferred messages (all of them while `_holding`)
                # depend on this loop, so it must outlive the outage.
                self.log.warning(
                    "re-queueing stored messages failed, retrying", error=str(err)[:200]
                )
                await self.clock.sleep(0.5)
                self._deferred_event.set()

    async def sweep(self) -> None:
        """Queue RECEIVED rows in id (= arrival) order; a chat whose queue fills stays
        deferred, and none of its later rows is queued before the next sweep."""
        blocked: set[str] = set()
        after = 0
        while True:
            async with self.batcher.engine.connect() as conn:
                rows = await store.received_inbound(
                    conn, self.fence.tenant_id, after_id=after, limit=SWEEP_BATCH
                )
            for r in rows:
                item = _Item(r["wa_id"], r["chat"], r["sender"], r["body"], r["created_at"])
                if item.chat in blocked or not self._enqueue(item):
                    blocked.add(item.chat)
                else:
                    self._waiting.pop(item.wa_id, None)
            complete = len(rows) < SWEEP_BATCH
            if complete or blocked:
                break
            after = rows[-1]["id"]
        if complete:
            # Every stored row was seen: only chats still blocked, or with a message
            # deferred after our read, must keep going through the sweep.
            self._deferred_chats = blocked | set(self._waiting.values())
            self._holding = False
        else:
            self._deferred_chats |= blocked
        if self._deferred_chats:
            self._deferred_event.set()

    async def _process(self, item: _Item) -> None:
        try:
            outcome = await self._decide(item)
            ok = await self.batcher.submit(
                store.complete_inbound_fn(self.fence, outcome, self.clock.now())
            )
            if not ok:
                # Either already processed (a duplicate run) or the lease is gone.
                if not await self._lease_still_ours():
                    self.on_lease_lost()
                    return
            self.outbox.replied(item.wa_id, item.chat, outcome.reply, committed=ok)
        except Exception:
            # Not processed (the database failed, say): it is still RECEIVED. Its chat
            # goes through the sweep, which queues it again — and nothing newer of the
            # chat is answered ahead of it meanwhile.
            self._deferred_chats.add(item.chat)
            self._deferred_event.set()
            raise
        finally:
            self._inflight.discard(item.wa_id)

    async def _decide(self, item: _Item) -> Outcome:
        tid = self.fence.tenant_id
        reply = self.matcher.reply_for(item.text, item.sender, item.chat)
        if reply is not None or self.config.webhook is None:
            return Outcome(tid, item.wa_id, item.chat, reply)
        msg = WebhookMessage(self.slug, item.wa_id, item.chat, item.sender, item.text, item.at)
        try:
            reply = await self.webhooks.deliver(self.config.webhook, msg)
        except WebhookFailed as err:
            self.log.warning("webhook failed", message_id=item.wa_id, reason=str(err))
            return Outcome(tid, item.wa_id, item.chat, None, error=str(err))
        return Outcome(tid, item.wa_id, item.chat, reply)

    async def _lease_still_ours(self) -> bool:
        from sqlalchemy import select

        async with self.batcher.engine.connect() as conn:
            row = (await conn.execute(select(self.fence.holds()))).scalar()
        return bool(row)
