"""The Engine protocol and its typed events.

A `TenantBot` talks to WhatsApp only through this module. An engine owns one WhatsApp
client for one tenant. Its life per connection:

* ``await engine.connect()`` establishes a connection. It returns once the connection is
  up: either already logged in (a `Connected` event follows or has been emitted) or
  waiting for a QR scan (`QrCode` events follow). It raises `ConnectFailed` — carrying a
  classified `Cause` — when no connection could be established (refused, DNS failure,
  banned at login, logged out at login ...).
* After a successful `connect()` the engine emits events to the sink given at
  construction. A connection that ends by itself ends with exactly one `ConnectionLost`
  (or subclass) event; `disconnect()` ends it without one.
* ``send_text`` hands a message to WhatsApp with the caller-chosen, stable message id:
  resending the same id after a crash is recorded once by WhatsApp (and the simulator).
  ``send_many`` sends several in order, overlapping their round trips.
* ``ack`` tells WhatsApp an inbound message is stored; unacked messages are redelivered.

Engines never retry by themselves: reconnecting is the bot's `ReconnectManager`'s job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ClassVar, NamedTuple, Protocol, cast, runtime_checkable

from wafleet.states import Cause

# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """Base of every event an engine emits."""


@dataclass(frozen=True, slots=True)
class QrCode(EngineEvent):
    """A new QR code to show; it is valid until ``expires_at`` (engine's estimate)."""

    code: str
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PairSuccess(EngineEvent):
    """The phone scanned the QR code (or entered the pairing code)."""

    phone: str
    jid: str = ""


@dataclass(frozen=True, slots=True)
class PairCode(EngineEvent):
    """A pairing code to type on the phone (pairing by phone number instead of QR)."""

    code: str


@dataclass(frozen=True, slots=True)
class Connected(EngineEvent):
    """Logged in and ready to send and receive."""

    phone: str
    jid: str = ""


@dataclass(frozen=True, slots=True)
class KeepAliveTimeout(EngineEvent):
    """Pings go unanswered; the engine may still recover (see `KeepAliveRestored`)."""


@dataclass(frozen=True, slots=True)
class KeepAliveRestored(EngineEvent):
    """Pings are answered again after a `KeepAliveTimeout`."""


@dataclass(frozen=True, slots=True)
class ConnectionLost(EngineEvent):
    """The connection ended by itself. Exactly one per successful ``connect()``."""

    cause: Cause = Cause.NETWORK
    detail: str = ""


@dataclass(frozen=True, slots=True)
class LoggedOut(ConnectionLost):
    """The linked device was removed (from the phone, or by WhatsApp)."""

    cause: Cause = Cause.LOGGED_OUT


@dataclass(frozen=True, slots=True)
class Replaced(ConnectionLost):
    """Another client took over the session."""

    cause: Cause = Cause.REPLACED


@dataclass(frozen=True, slots=True)
class TemporaryBan(ConnectionLost):
    """A temporary ban; no connect should be tried before ``expires_at``."""

    cause: Cause = Cause.TEMP_BANNED
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ClientOutdated(ConnectionLost):
    """WhatsApp rejected the client version."""

    cause: Cause = Cause.CLIENT_OUTDATED


@dataclass(frozen=True, slots=True)
class QrTimeout(ConnectionLost):
    """Every QR code expired without a scan."""

    cause: Cause = Cause.QR_TIMEOUT


@dataclass(frozen=True, slots=True)
class IncomingMessage(EngineEvent):
    """A text message from a contact. Must be ``ack``-ed once durably stored."""

    id: str
    chat: str
    sender: str
    text: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Receipt(EngineEvent):
    """Delivery state of a message we sent: ``status`` is DELIVERED or READ."""

    message_id: str
    status: str
    at: datetime


# --------------------------------------------------------------------------- errors


class EngineError(Exception):
    """Base of engine errors."""


@dataclass
class ConnectFailed(EngineError):
    """No connection could be established; ``cause`` says why (see states.CAUSE_ACTIONS)."""

    cause: Cause
    detail: str = ""
    expires_at: datetime | None = None  # for temp bans

    def __str__(self) -> str:
        return f"{self.cause.value}: {self.detail}" if self.detail else self.cause.value


class NotConnected(EngineError):
    """An operation that needs a live, logged-in connection was called without one."""


class NotAttempted(EngineError):
    """`Engine.send_many` stopped before this message (an earlier one failed): not sent."""


# --------------------------------------------------------------------------- protocol


class OutgoingText(NamedTuple):
    to: str
    text: str
    message_id: str


async def send_in_order(
    send_text: Callable[[str, str, str], Awaitable[None]], messages: Sequence[OutgoingText]
) -> list[EngineError | None]:
    """`Engine.send_many` one message at a time, stopping at the first failure — for
    engines whose sends queue behind each other anyway, where a window in flight would
    only make the last ones' timeouts run while they wait."""
    results: list[EngineError | None] = []
    for m in messages:
        try:
            await send_text(*m)
        except EngineError as err:
            results.append(err)
            results += [NotAttempted("an earlier message of the window failed")] * (
                len(messages) - len(results)
            )
            break
        results.append(None)
    return results


async def send_concurrently(
    send_text: Callable[[str, str, str], Awaitable[None]], messages: Sequence[OutgoingText]
) -> list[EngineError | None]:
    """`Engine.send_many` for engines whose concurrent ``send_text`` calls keep their
    order (each puts its request on the wire before its first suspension)."""
    results = await asyncio.gather(*(send_text(*m) for m in messages), return_exceptions=True)
    for res in results:
        if isinstance(res, BaseException) and not isinstance(res, EngineError):
            raise res  # not a send failure: a bug or a cancellation, surface it
    return cast(list[EngineError | None], results)


EventSink = Callable[[EngineEvent], Awaitable[None]]


class CredentialStore(Protocol):
    """Where an engine keeps the device credentials issued at pairing.

    Files under ``<data dir>/sessions/<slug>/`` by default; the shared database in
    multi-worker mode so a tenant can fail over without a new QR scan.
    """

    async def load(self) -> bytes | None: ...

    async def save(self, data: bytes) -> None: ...

    async def wipe(self) -> None: ...


@runtime_checkable
class Engine(Protocol):
    name: ClassVar[str]

    async def connect(self) -> None: ...

    async def disconnect(self) -> None: ...

    async def logout(self) -> None: ...

    async def send_text(self, to: str, text: str, message_id: str) -> None:
        """Send a text under the caller's stable id; returns once the server took it.
        Concurrent calls must reach the wire in call order (see `send_many`)."""
        ...

    async def send_many(self, messages: Sequence[OutgoingText]) -> list[EngineError | None]:
        """Send several texts in order, overlapping their round trips where the engine
        can: the outbox sends a window of replies this way. One result per message: None
        once the server took it, else the `EngineError` it failed with (`NotConnected`
        when the connection is gone, `NotAttempted` for messages after a failure that an
        engine sending one by one did not try). `send_concurrently` and `send_in_order`
        implement it over `send_text`."""
        ...

    async def ack(self, message_id: str) -> None: ...

    async def pair_phone(self, phone: str) -> str:
        """Pairing by phone number: returns the code to type on the phone."""
        ...

    async def close(self) -> None:
        """Release every resource (sockets, child processes). Idempotent."""
        ...


@dataclass(frozen=True)
class EngineContext:
    """What an engine factory needs to build an engine for one tenant."""

    tenant_slug: str
    session_dir: Path
    credentials: CredentialStore
    sink: EventSink
    extra: dict[str, object] = field(default_factory=dict)
