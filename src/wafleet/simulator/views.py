"""Read-only views of the simulator's state for the control API (JSON-ready dicts)."""

from __future__ import annotations

import itertools
from typing import Any

from wafleet.simulator import protocol as p
from wafleet.simulator.connection import QR
from wafleet.simulator.core import Simulator


def stats(sim: Simulator) -> dict[str, Any]:
    return {
        "connections": {ph: len(a.conns) for ph, a in sim.accounts.items()},
        "max_concurrent": dict(sim.max_concurrent),
        "connect_attempts": dict(sim.connect_attempts),
        "inbound_pending": sum(len(a.pending) for a in sim.accounts.values()),
        "delivered": sim.delivered,
        "outbound": sim.outbound_count,
        # extensions
        "deliveries": sim.deliveries,
        "open_sockets": len(sim.conns),
        "qr_waiting": sum(1 for c in sim.conns if c.state == QR),
    }


def pending_qr(sim: Simulator) -> list[dict[str, Any]]:
    now = sim.now()
    return [
        {"qr": code, "expires_at": p.iso(e.expires_at), "session": e.conn.id}
        for code, e in sim.pairing.codes.items()
        if e.phone is None and e.expires_at is not None and e.expires_at > now
    ]


def accounts(sim: Simulator) -> list[dict[str, Any]]:
    return [
        {
            "phone": a.phone,
            "jid": a.jid,
            "linked_devices": sum(1 for d in a.devices if d.linked),
            "connections": len(a.conns),
            "inbound_pending": len(a.pending),
            "pending_ids": list(itertools.islice(a.pending, 100)),  # for the phone page
            "outbound": len(a.outbound),
        }
        for a in sim.accounts.values()
    ]


def faults(sim: Simulator) -> list[dict[str, Any]]:
    now = sim.clock()
    return [
        {
            "kind": f.kind,
            "phone": f.phone,
            "remaining_s": None if f.until is None else round(max(0.0, f.until - now), 3),
        }
        for f in sim.faults.listing()
    ]
