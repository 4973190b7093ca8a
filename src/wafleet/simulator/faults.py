"""Fault injection: which faults exist, which of them persist, and their expiry.

Semantics (the contract's kinds; ``duration_s`` is multiplied by ``--time-scale`` like
every other simulator duration, and the effective ``expires_at`` is returned by
``POST /sim/faults``):

* ``drop`` — closes the phone's open sockets at once, without a ``close`` frame (the engine
  sees an abrupt end: cause ``network``). Without ``duration_s`` it is a one-shot event;
  with it, new connections are dropped right after the upgrade until it ends (the engine's
  ``connect()`` fails with ``network``).
* ``blackhole`` — sockets stay open but the server stops answering anything (pongs,
  confirmations, deliveries) and ignores what it receives, until cleared or expired. New
  connections during it are accepted and never answered. Engines detect it by keepalive.
* ``refuse`` — new WebSocket upgrades are rejected (HTTP 403 → ``ConnectFailed(network)``)
  until cleared or expired; open connections are left alone.
* ``logout`` — one-shot: the phone unlinks its devices; open connections get ``close``
  logged_out; later logins with those credentials fail with logged_out (a new scan is
  needed; clearing faults does not relink).
* ``replaced`` — one-shot: open connections get ``close`` replaced; the device stays valid.
* ``temp_ban`` — open connections get ``close`` temp_banned with the expiry; logins fail
  with temp_banned + expiry until it ends (omitted ``duration_s``: until cleared).
* ``restart_required`` — one-shot: open connections get ``close`` restart_required.
* ``outdated`` — open connections get ``close`` client_outdated; logins fail with
  client_outdated until cleared or expired.

``phone: "*"`` targets every phone (``drop`` / ``refuse`` / ``blackhole`` also hit
connections still waiting for a QR scan, which have no phone yet).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

ALL: Final = "*"
KINDS: Final = (
    "drop",
    "blackhole",
    "refuse",
    "logout",
    "replaced",
    "temp_ban",
    "restart_required",
    "outdated",
)
# Kinds that are stored and keep acting on new connections (drop only with a duration).
PERSISTENT: Final = frozenset({"blackhole", "refuse", "temp_ban", "outdated"})
ONE_SHOT: Final = frozenset({"logout", "replaced", "restart_required"})


@dataclass(slots=True)
class Fault:
    kind: str
    phone: str  # a phone number or "*"
    until: float | None  # monotonic deadline; None = until cleared

    def applies_to(self, phone: str | None) -> bool:
        return self.phone == ALL or (phone is not None and self.phone == phone)


class FaultTable:
    """The stored faults; expired ones are forgotten lazily when looked up."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._faults: list[Fault] = []

    def __bool__(self) -> bool:
        return bool(self._faults)

    def add(self, fault: Fault) -> None:
        # A new fault of the same kind and target replaces the old one (new duration).
        self._faults = [
            f for f in self._faults if not (f.kind == fault.kind and f.phone == fault.phone)
        ]
        self._faults.append(fault)

    def active(self, kind: str, phone: str | None) -> Fault | None:
        if not self._faults:
            return None
        now = self._clock()
        self._faults = [f for f in self._faults if f.until is None or f.until > now]
        for f in self._faults:
            if f.kind == kind and f.applies_to(phone):
                return f
        return None

    def clear(self, phone: str | None = None) -> int:
        """Remove every fault (``phone`` None) or those targeting ``phone``; returns count."""
        before = len(self._faults)
        if phone is None:
            self._faults = []
        else:
            self._faults = [f for f in self._faults if f.phone != phone]
        return before - len(self._faults)

    def listing(self) -> list[Fault]:
        self.active("", None)  # prune expired
        return list(self._faults)
