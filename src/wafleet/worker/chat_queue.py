"""ChatQueueManager: one chat's messages are processed in order, chats in parallel.

Each chat has a bounded queue and at most one consumer task; a full queue refuses the
item (``enqueue`` returns False): the message is already stored, so the caller defers it
and it is picked up again by the pipeline's sweep. Empty queues are evicted, so memory is
bounded by the number of chats with work in flight.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from wafleet.logging import get_logger

T = TypeVar("T")
log = get_logger("wafleet.chat_queue")


@dataclass
class ChatQueueMetrics:
    enqueued: int = 0
    processed: int = 0
    failed: int = 0
    deferred: int = 0
    max_depth: int = 0


@dataclass
class _ChatQueue(Generic[T]):
    items: deque[T] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


class ChatQueueManager(Generic[T]):
    def __init__(
        self,
        handler: Callable[[T], Awaitable[None]],
        *,
        max_per_chat: int = 100,
        name: str = "chat",
    ) -> None:
        self._handler = handler
        self.max_per_chat = max_per_chat
        self.name = name
        self._queues: dict[str, _ChatQueue[T]] = {}
        self.metrics = ChatQueueMetrics()
        self._closed = False

    def enqueue(self, chat: str, item: T) -> bool:
        if self._closed:
            return False
        q = self._queues.get(chat)
        if q is None:
            q = self._queues[chat] = _ChatQueue()
        if len(q.items) >= self.max_per_chat:
            self.metrics.deferred += 1
            return False
        q.items.append(item)
        self.metrics.enqueued += 1
        self.metrics.max_depth = max(self.metrics.max_depth, len(q.items))
        if q.task is None:
            q.task = asyncio.create_task(self._consume(chat, q), name=f"{self.name}:{chat}")
        return True

    async def _consume(self, chat: str, q: _ChatQueue[T]) -> None:
        try:
            while q.items:
                item = q.items[0]
                try:
                    await self._handler(item)
                    self.metrics.processed += 1
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # The handler owns error handling (it marks the message FAILED); this
                    # only keeps one bad message from killing the chat's consumer.
                    self.metrics.failed += 1
                    log.exception("chat handler failed", chat=chat, queue=self.name)
                q.items.popleft()
        finally:
            q.task = None
            if not q.items and self._queues.get(chat) is q:
                del self._queues[chat]

    @property
    def depth(self) -> int:
        return sum(len(q.items) for q in self._queues.values())

    @property
    def chats(self) -> int:
        return len(self._queues)

    def idle(self) -> bool:
        return not self._queues

    def busy(self, chat: str) -> bool:
        """True while ``chat`` has an item queued or being handled."""
        return chat in self._queues

    async def drain(self, timeout: float) -> bool:
        """Stop intake and wait up to ``timeout`` for in-flight items. True if drained."""
        self._closed = True
        tasks = [q.task for q in self._queues.values() if q.task is not None]
        if not tasks:
            return True
        _done, pending = await asyncio.wait(tasks, timeout=timeout)
        return not pending

    async def close(self) -> None:
        self._closed = True
        tasks = [q.task for q in self._queues.values() if q.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
        self._queues.clear()
