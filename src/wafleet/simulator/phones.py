"""Accounts (one per phone number) and the linked devices issued at pairing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wafleet.simulator.connection import Conn


@dataclass(slots=True, eq=False)
class Device:
    """A linked device: ``token`` is the credential the engine stores and presents."""

    token: str
    phone: str
    linked: bool = True


@dataclass(slots=True, eq=False)
class Account:
    phone: str
    # Inbound messages not yet acked, in arrival order (dicts keep insertion order), as
    # the wire items {"id","chat","sender","text","at"}.
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    outbound: list[dict[str, Any]] = field(default_factory=list)
    outbound_ids: set[str] = field(default_factory=set)
    conns: list[Conn] = field(default_factory=list)  # logged-in connections
    devices: list[Device] = field(default_factory=list)

    @property
    def jid(self) -> str:
        return self.phone.lstrip("+") + "@s.whatsapp.net"
