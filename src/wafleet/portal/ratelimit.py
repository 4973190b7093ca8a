"""Login throttling: at most N failed attempts per key (account, address) per window.

Bounded: failures are kept per key in an LRU of at most ``max_keys`` entries, each holding
at most ``max_failures`` timestamps, so a flood of made-up accounts cannot grow memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

Clock = Callable[[], float]


class LoginLimiter:
    def __init__(
        self,
        *,
        max_failures: int = 5,
        window_s: float = 300.0,
        max_keys: int = 10_000,
        clock: Clock = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        q = self._failures.get(key)
        if q is None:
            return None
        while q and now - q[0] >= self.window_s:
            q.popleft()
        if not q:
            del self._failures[key]
            return None
        return q

    def retry_after(self, keys: Iterable[str]) -> float:
        """Seconds until a blocked key frees up; 0 when none of ``keys`` is blocked."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            q = self._recent(key, now)
            if q is not None and len(q) >= self.max_failures:
                wait = max(wait, self.window_s - (now - q[0]))
        return wait

    def record_failure(self, keys: Iterable[str]) -> None:
        now = self._clock()
        for key in keys:
            q = self._recent(key, now)
            if q is None:
                q = deque(maxlen=self.max_failures)
                self._failures[key] = q
            q.append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)
