"""ReconnectManager: exponential backoff with jitter and a bounded number of attempts.

A pure object: it computes delays and keeps the attempt count; the waiting goes through
the injected clock, so tests run without real time. The TenantBot's single run loop is
the only caller, which is what guarantees that a tenant never has two connects in flight.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from wafleet.config import Settings
from wafleet.worker.clock import Clock, SystemClock


@dataclass(frozen=True)
class BackoffPolicy:
    initial_delay: float = 1.0
    max_delay: float = 120.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int = 20

    @classmethod
    def from_settings(cls, s: Settings) -> BackoffPolicy:
        return cls(
            initial_delay=s.reconnect_initial_delay,
            max_delay=s.reconnect_max_delay,
            multiplier=s.reconnect_multiplier,
            jitter=s.reconnect_jitter,
            max_attempts=s.reconnect_max_attempts,
        )

    def base_delay(self, attempt: int) -> float:
        """Delay before ``attempt`` (1-based), without jitter."""
        return min(self.max_delay, self.initial_delay * self.multiplier ** max(0, attempt - 1))


@dataclass(frozen=True)
class ReconnectStatus:
    active: bool
    attempt: int
    max_attempts: int
    next_delay: float | None
    next_retry_at: datetime | None


class ReconnectManager:
    def __init__(
        self,
        policy: BackoffPolicy,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self.clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self.attempt = 0
        self.active = False
        self.next_delay: float | None = None
        self.next_retry_at: datetime | None = None

    @property
    def exhausted(self) -> bool:
        return self.attempt >= self.policy.max_attempts

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        """Stop retrying but keep the count (e.g. parked on a needs-link cause)."""
        self.active = False
        self.next_delay = None
        self.next_retry_at = None

    def reset(self) -> None:
        """A connection succeeded: forget the attempts."""
        self.stop()
        self.attempt = 0

    def schedule(self) -> float | None:
        """Count one more attempt and return the delay before it, or None when the
        maximum number of attempts has been used."""
        if self.exhausted:
            self.stop()
            return None
        self.active = True
        self.attempt += 1
        base = self.policy.base_delay(self.attempt)
        spread = base * self.policy.jitter
        delay = max(0.0, base + self._rng.uniform(-spread, spread))
        self.next_delay = delay
        self.next_retry_at = self.clock.now() + timedelta(seconds=delay)
        return delay

    async def wait(self, delay: float) -> None:
        await self.clock.sleep(delay)
        self.next_retry_at = None

    def status(self) -> ReconnectStatus:
        return ReconnectStatus(
            active=self.active,
            attempt=self.attempt,
            max_attempts=self.policy.max_attempts,
            next_delay=self.next_delay,
            next_retry_at=self.next_retry_at,
        )
