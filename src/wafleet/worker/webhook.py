"""Webhook delivery for messages no rule answers.

POST ``{"tenant", "message": {"id","chat","sender","text","at"}}`` with
``X-Wafleet-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>``; a JSON answer
``{"reply": "..."}`` becomes the reply. Timeouts, network errors, 408, 429 and 5xx are
retried with exponential backoff up to ``max_attempts``; any other status is final.
Loopback/private targets are refused after DNS resolution unless explicitly allowed
(a hostname that resolves to 127.0.0.1 must not reach internal services).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import httpx

from wafleet.security import hmac_sha256_hex
from wafleet.worker.clock import Clock
from wafleet.worker.rules import Webhook, ip_is_private, is_private_host

RETRYABLE_STATUS = {408, 429}
MAX_REPLY_LEN = 4096


class WebhookFailed(Exception):
    """Final failure; ``str()`` is the reason stored on the message."""


@dataclass(frozen=True)
class WebhookMessage:
    tenant: str
    id: str
    chat: str
    sender: str
    text: str
    at: datetime

    def body(self) -> bytes:
        return json.dumps(
            {
                "tenant": self.tenant,
                "message": {
                    "id": self.id,
                    "chat": self.chat,
                    "sender": self.sender,
                    "text": self.text,
                    "at": self.at.isoformat(),
                },
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()


async def _check_target(url: str, allow_private: bool) -> None:
    if allow_private:
        return
    host = urlsplit(url).hostname or ""
    if is_private_host(host):
        raise WebhookFailed(f"webhook host {host} is a loopback/private address (refused)")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise _Retryable(f"DNS lookup of {host} failed: {err.strerror}") from None
    for info in infos:
        addr = info[4][0]
        if ip_is_private(ipaddress.ip_address(str(addr))):
            raise WebhookFailed(f"webhook host {host} resolves to private address {addr} (refused)")


class _Retryable(Exception):
    pass


class WebhookClient:
    def __init__(
        self,
        clock: Clock,
        *,
        timeout: float = 10.0,
        max_attempts: int = 8,
        allow_private: bool = False,
        initial_delay: float = 1.0,
        max_delay: float = 60.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.clock = clock
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.allow_private = allow_private
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), follow_redirects=False
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def deliver(self, hook: Webhook, msg: WebhookMessage) -> str | None:
        """Returns the reply text (or None when the hook answered without one).
        Raises WebhookFailed once the attempts are used up or the error is final."""
        body = msg.body()
        headers = {
            "content-type": "application/json",
            "x-wafleet-signature": "sha256=" + hmac_sha256_hex(hook.secret, body),
            "user-agent": "wafleet-webhook/1",
        }
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                await _check_target(hook.url, self.allow_private)
                resp = await self._client.post(hook.url, content=body, headers=headers)
            except WebhookFailed:
                raise
            except _Retryable as err:
                last = str(err)
            except httpx.TimeoutException:
                last = f"timeout after {self.timeout:g}s"
            except httpx.TransportError as err:
                last = f"network error: {err.__class__.__name__}"
            else:
                if resp.status_code < 300:
                    return _parse_reply(resp)
                last = f"HTTP {resp.status_code}"
                if not (resp.status_code in RETRYABLE_STATUS or resp.status_code >= 500):
                    raise WebhookFailed(f"webhook answered {last} (not retried)")
            if attempt < self.max_attempts:
                delay = min(self.max_delay, self.initial_delay * 2 ** (attempt - 1))
                await self.clock.sleep(delay)
        raise WebhookFailed(f"webhook failed after {self.max_attempts} attempts: {last}")


def _parse_reply(resp: httpx.Response) -> str | None:
    if not resp.content:
        return None
    try:
        data = resp.json()
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("reply"), str) and data["reply"].strip():
        return str(data["reply"])[:MAX_REPLY_LEN]
    return None
