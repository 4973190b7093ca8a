"""The internal wire protocol between `SimulatorEngine` and the simulator server.

Transport: one WebSocket per engine connection at ``ws://HOST:PORT/ws``, JSON text
frames, each an object with a ``type``. WebSocket-level pings are not used: keepalive is
an application frame so that a *blackhole* fault (socket open, nobody answering) looks to
the engine exactly like a dead WhatsApp connection.

Handshake
    The engine sends its linked-device credentials (if it has any) in the HTTP header
    ``x-sim-credentials: <token>`` so the server knows the phone before accepting: that is
    how ``connect_attempts`` is counted per phone and how ``refuse`` / ``drop`` faults of
    one phone reject the upgrade (HTTP 403) or close the socket at once.

Engine → server
    ``{"type":"hello","creds":TOKEN|null,"version":V}``   first frame of every connection.
    ``{"type":"unlink","creds":TOKEN}``                   first frame instead of hello: remove
                                                          the device while offline (logout);
                                                          answered with ``unlinked``.
    ``{"type":"ping","id":N}``                            answered with ``pong``.
    ``{"type":"send","id":MSGID,"to":PHONE,"text":T}``    answered with ``sent`` once recorded
                                                          (a resent MSGID is recorded once),
                                                          then ``receipts`` DELIVERED, READ.
    ``{"type":"ack","ids":[MSGID,...]}``                  inbound messages durably stored.
    ``{"type":"logout"}``                                 unlink this device; the server
                                                          answers ``close`` logged_out.
    ``{"type":"pair_phone","phone":P}``                   while waiting for a scan: ask for a
                                                          pairing code (``pair_code``).

Server → engine
    ``{"type":"qr","code":RAW,"expires_at":ISO}``         waiting for a scan (rotates).
    ``{"type":"pair_code","code":C}``                     answer to ``pair_phone``.
    ``{"type":"pair_success","phone":P,"jid":J,"creds":TOKEN}``  a phone linked this
                                                          device; a ``close`` restart_required
                                                          follows, like WhatsApp.
    ``{"type":"connected","phone":P,"jid":J}``            login accepted.
    ``{"type":"login_failed","reason":R,"expires_at":ISO|null,"detail":S}``  login refused
                                                          (logged_out, temp_banned,
                                                          client_outdated); the socket closes.
    ``{"type":"messages","items":[{"id","chat","sender","text","at"},...]}``  inbound,
                                                          redelivered on every new login
                                                          until acked; order kept.
    ``{"type":"sent","id":MSGID,"duplicate":BOOL}``
    ``{"type":"receipts","items":[{"id","status","at"},...]}``  status DELIVERED / READ.
    ``{"type":"pong","id":N}``
    ``{"type":"unlinked","ok":BOOL}``
    ``{"type":"close","reason":R,"expires_at":ISO|null,"detail":S}``  the server ends the
                                                          connection for reason R (logged_out,
                                                          replaced, temp_banned,
                                                          restart_required, client_outdated,
                                                          qr_timeout); the socket closes next.
    A socket that closes WITHOUT a preceding ``close`` frame was dropped (cause network).

Consecutive ``messages`` / ``receipts`` frames are merged by the server's per-connection
writer, and the engine batches its ``ack`` ids: under load one frame carries many items.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final

CREDENTIALS_HEADER: Final = "x-sim-credentials"
CLIENT_VERSION: Final = "wafleet-sim/1"

# `close` / `login_failed` reasons; the values are the contract's cause names.
LOGGED_OUT: Final = "logged_out"
REPLACED: Final = "replaced"
TEMP_BANNED: Final = "temp_banned"
RESTART_REQUIRED: Final = "restart_required"
CLIENT_OUTDATED: Final = "client_outdated"
QR_TIMEOUT: Final = "qr_timeout"

# WebSocket close codes used by the server.
CLOSE_NORMAL: Final = 1000
CLOSE_DROPPED: Final = 1011  # a `drop` fault: no `close` frame before it
CLOSE_POLICY: Final = 1008  # before accept → uvicorn answers the upgrade with HTTP 403

MERGEABLE: Final = frozenset({"messages", "receipts"})

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode(frame: dict[str, Any]) -> str:
    return _dumps(frame)


def decode(text: str | bytes) -> dict[str, Any] | None:
    """A frame, or None for anything that is not a JSON object with a string ``type``."""
    try:
        obj = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):  # "[[[[..." nests too deep
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        return None
    return obj


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def parse_iso(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def coalesce(frames: list[dict[str, Any]]) -> list[str]:
    """Encode ``frames`` in order, merging runs of ``messages`` / ``receipts`` frames."""
    out: list[dict[str, Any]] = []
    for frame in frames:
        kind = frame["type"]
        if out and kind in MERGEABLE and out[-1]["type"] == kind:
            out[-1]["items"].extend(frame["items"])
        else:
            out.append(frame)
    return [_dumps(f) for f in out]
