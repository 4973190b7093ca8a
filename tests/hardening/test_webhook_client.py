"""The worker's webhook client against a real receiver on 127.0.0.1: HMAC verified by
the receiver, retries decided by status (408/429/5xx/timeouts/network retried up to the
attempt limit with exponential backoff, other 4xx final), and loopback/private targets
refused at delivery — by name, by literal and after DNS — when not allowed.

Backoff sleeps go to a FakeClock (recorded, not waited); only HTTP timeouts are real."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.hardening.conftest import Tally
from tests.hardening.hook_receiver import HookReceiver, running_hook
from tests.support.procs import free_port
from wafleet.worker.clock import FakeClock
from wafleet.worker.rules import Webhook
from wafleet.worker.webhook import WebhookClient, WebhookFailed, WebhookMessage

SECRET = "hook-secret-123"
TALLY = Tally("webhook client")


@pytest.fixture
def hook() -> Iterator[HookReceiver]:
    with running_hook(SECRET) as h:
        yield h


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _client(clock: FakeClock, **kw: object) -> WebhookClient:
    opts: dict[str, object] = {"allow_private": True, "max_attempts": 4, "max_delay": 3.0}
    opts.update(kw)
    return WebhookClient(clock, **opts)  # type: ignore[arg-type]


def _msg(text: str, mid: str = "M1") -> WebhookMessage:
    return WebhookMessage("acme", mid, "+1555", "+1555", text, datetime(2026, 1, 1, tzinfo=UTC))


async def test_signed_body_is_verified_by_the_receiver(
    hook: HookReceiver, clock: FakeClock
) -> None:
    client = _client(clock)
    try:
        reply = await client.deliver(Webhook(url=hook.url, secret=SECRET), _msg("ok hello"))
        assert reply == "hook: ok hello"
        # the same body signed with another secret is refused by the receiver (401, final)
        with pytest.raises(WebhookFailed, match="HTTP 401"):
            await client.deliver(Webhook(url=hook.url, secret="not-the-secret"), _msg("ok x", "M2"))
    finally:
        await client.close()
    [good, bad] = hook.calls
    assert good.signature_ok and not bad.signature_ok
    assert good.body == {
        "tenant": "acme",
        "message": {
            "id": "M1",
            "chat": "+1555",
            "sender": "+1555",
            "text": "ok hello",
            "at": "2026-01-01T00:00:00+00:00",
        },
    }
    # the signature the receiver checked is over the exact bytes the client builds
    raw = _msg("ok hello").body()
    assert json.loads(raw) == good.body
    assert clock.sleeps == []


@pytest.mark.parametrize("status", [408, 429, 500, 503])
async def test_retryable_status_is_retried_up_to_max_attempts_with_growing_backoff(
    hook: HookReceiver, clock: FakeClock, status: int
) -> None:
    client = _client(clock)
    try:
        with pytest.raises(WebhookFailed) as err:
            await client.deliver(Webhook(url=hook.url, secret=SECRET), _msg(f"fail {status}"))
    finally:
        await client.close()
    assert hook.attempts["M1"] == 4
    assert str(err.value) == f"webhook failed after 4 attempts: HTTP {status}"
    assert clock.sleeps == [1.0, 2.0, 3.0]  # 1, 2, 4 capped at max_delay 3
    TALLY.faults += 4
    TALLY.report()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
async def test_other_4xx_is_final_at_once(
    hook: HookReceiver, clock: FakeClock, status: int
) -> None:
    client = _client(clock)
    try:
        with pytest.raises(WebhookFailed, match=f"HTTP {status} \\(not retried\\)"):
            await client.deliver(Webhook(url=hook.url, secret=SECRET), _msg(f"fail {status}"))
    finally:
        await client.close()
    assert hook.attempts["M1"] == 1 and clock.sleeps == []


async def test_flaky_hook_succeeds_within_the_attempts(
    hook: HookReceiver, clock: FakeClock
) -> None:
    client = _client(clock)
    try:
        reply = await client.deliver(Webhook(url=hook.url, secret=SECRET), _msg("flaky 3 hi"))
    finally:
        await client.close()
    assert reply == "hook: flaky 3 hi"
    assert hook.attempts["M1"] == 4 and clock.sleeps == [1.0, 2.0, 3.0]


async def test_timeout_is_bounded_and_retried(hook: HookReceiver, clock: FakeClock) -> None:
    client = _client(clock, timeout=0.2, max_attempts=2)
    try:
        with pytest.raises(WebhookFailed) as err:
            await client.deliver(Webhook(url=hook.url, secret=SECRET), _msg("slow 1.0"))
    finally:
        await client.close()
    assert str(err.value) == "webhook failed after 2 attempts: timeout after 0.2s"
    assert hook.attempts["M1"] == 2 and clock.sleeps == [1.0]


async def test_network_error_is_retried(clock: FakeClock) -> None:
    client = _client(clock, max_attempts=3)
    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    try:
        with pytest.raises(WebhookFailed, match="after 3 attempts: network error"):
            await client.deliver(Webhook(url=url, secret=SECRET), _msg("ok"))
    finally:
        await client.close()
    assert clock.sleeps == [1.0, 2.0]


def _loopback_name() -> str | None:
    """A host name (not 'localhost') that this machine resolves to a loopback address."""
    name = socket.gethostname()
    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(name, None)}
    except OSError:
        return None
    return name if addrs and all(a.startswith("127.") or a == "::1" for a in addrs) else None


@pytest.mark.parametrize("host", ["localhost", "localhost.", "127.0.0.1", "[::1]", "127.1", "dns"])
async def test_private_targets_refused_at_delivery_when_not_allowed(
    hook: HookReceiver, clock: FakeClock, host: str
) -> None:
    if host == "dns":
        name = _loopback_name()
        if name is None:
            pytest.skip("no host name resolving to loopback here (e.g. via /etc/hosts)")
        host = name
    client = _client(clock, allow_private=False)
    url = f"http://{host}:{hook.port}/hook"
    try:
        with pytest.raises(WebhookFailed, match="refused") as err:
            await client.deliver(Webhook(url=url, secret=SECRET), _msg("ok"))
    finally:
        await client.close()
    if host not in ("localhost", "localhost.", "127.0.0.1", "[::1]", "127.1"):
        assert "resolves to private address" in str(err.value)  # caught after DNS
    assert hook.calls == [] and clock.sleeps == []  # never sent, never retried
    # the same target is reached when private targets are allowed (the server is real)
    if host in ("localhost", "127.0.0.1", "127.1") or host == _loopback_name():
        allowed = _client(clock, allow_private=True)
        try:
            assert await allowed.deliver(Webhook(url=url, secret=SECRET), _msg("ok")) == "hook: ok"
        finally:
            await allowed.close()
