"""Delivery side of operator alerts: the `Alert` and its signed payload, a per-key
token-bucket rate limit with bounded memory, a sender that POSTs with bounded retries
decided by error type, and the counters of what became of alerts (`AlertStats`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from wafleet.logging import get_logger
from wafleet.security import hmac_sha256_hex

log = get_logger("wafleet.alerts")

SIGNATURE_HEADER = "X-Wafleet-Signature"
Clock = Callable[[], datetime]
Monotonic = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Alert:
    """``kind``: tenant_error, logged_out, temp_banned, recovered (tenant alerts) or
    worker_stale, worker_error, worker_recovered (``tenant`` is None, ``worker`` set)."""

    kind: str
    tenant: str | None
    at: datetime
    detail: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """What the rate limit counts per: the tenant, or the worker."""
        return f"tenant:{self.tenant}" if self.tenant else f"worker:{self.extra.get('worker')}"

    def payload(self, suppressed: int = 0) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": self.kind,
            "tenant": self.tenant,
            "at": self.at.isoformat(),
            "detail": self.detail,
            **self.extra,
        }
        if suppressed:
            body["suppressed"] = suppressed  # alerts of this tenant dropped by the rate limit
        return body


@dataclass
class AlertStats:
    queued: int = 0
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    dropped: int = 0  # queue full
    deduplicated: int = 0
    delivered: list[dict[str, Any]] = field(default_factory=list)  # the last few, for tests/UI

    def remember(self, payload: dict[str, Any], keep: int = 50) -> None:
        self.delivered.append(payload)
        del self.delivered[:-keep]


def sign(key: str, body: bytes) -> str:
    return "sha256=" + hmac_sha256_hex(key, body)


class TokenBucket:
    def __init__(self, capacity: float, per_seconds: float, now: float) -> None:
        self.capacity = capacity
        self.rate = capacity / per_seconds
        self.tokens = capacity
        self.updated = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.updated) * self.rate >= self.capacity


class RateLimiter:
    """At most ``capacity`` alerts per key per ``per_seconds`` (refilled continuously).

    Memory is bounded: at most ``max_keys`` buckets; when over, full buckets (equivalent to
    no bucket) go first, then the least recently used.
    """

    def __init__(
        self,
        capacity: int = 5,
        per_seconds: float = 600.0,
        *,
        max_keys: int = 10_000,
        monotonic: Monotonic = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.per_seconds = per_seconds
        self.max_keys = max_keys
        self.monotonic = monotonic
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.suppressed: dict[str, int] = {}

    def allow(self, key: str) -> bool:
        now = self.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._evict(now, room_for=1)
            bucket = TokenBucket(self.capacity, self.per_seconds, now)
            self._buckets[key] = bucket
        else:
            self._buckets.move_to_end(key)
        if bucket.take(now):
            return True
        self.suppressed[key] = self.suppressed.get(key, 0) + 1
        return False

    def take_suppressed(self, key: str) -> int:
        return self.suppressed.pop(key, 0)

    def _evict(self, now: float, room_for: int) -> None:
        limit = self.max_keys - room_for
        if len(self._buckets) <= limit:
            return
        for k in [k for k, b in self._buckets.items() if b.full(now)]:
            del self._buckets[k]
        while len(self._buckets) > limit:
            k, _ = self._buckets.popitem(last=False)
        # suppression counts follow their buckets
        for k in [k for k in self.suppressed if k not in self._buckets]:
            del self.suppressed[k]

    def __len__(self) -> int:
        return len(self._buckets)


class PermanentDeliveryError(Exception):
    """The receiver refused the alert (4xx other than 408/429): retrying cannot help."""


class TransientDeliveryError(Exception):
    """The receiver answered 408/425/429/5xx on the last attempt."""


RETRYABLE_STATUS = frozenset({408, 425, 429})


class AlertSender:
    """POST one signed alert; retries network errors, timeouts, 408/429 and 5xx with
    exponential backoff, at most ``max_attempts`` times."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        client: httpx.AsyncClient | None = None,
        max_attempts: int = 4,
        initial_delay: float = 1.0,
        max_delay: float = 30.0,
        timeout: float = 5.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.url = url
        self.key = key
        self.client = client or httpx.AsyncClient(timeout=timeout, trust_env=True)
        self._own_client = client is None
        self.max_attempts = max_attempts
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.sleep = sleep

    async def send(self, payload: dict[str, Any]) -> int:
        """Deliver; returns the attempts it took. Raises PermanentDeliveryError, or the
        last transient error once the attempts are spent."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.key, body)}
        delay = self.initial_delay
        for attempt in range(1, self.max_attempts + 1):
            try:
                resp = await self.client.post(self.url, content=body, headers=headers)
            except httpx.TransportError as err:  # connect errors, timeouts, resets
                failure: Exception = err
            else:
                if resp.status_code < 300:
                    return attempt
                if resp.status_code < 500 and resp.status_code not in RETRYABLE_STATUS:
                    raise PermanentDeliveryError(f"HTTP {resp.status_code}")
                failure = TransientDeliveryError(f"HTTP {resp.status_code}")
            if attempt == self.max_attempts:
                raise failure
            await self.sleep(delay)
            delay = min(self.max_delay, delay * 2)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._own_client:
            await self.client.aclose()
