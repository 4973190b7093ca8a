"""The framed protocol between a `NeonizeEngine` (parent) and its engine child process.

Transport: one ``AF_UNIX`` socketpair; the child's end is inherited as a file descriptor
(``--fd N``). Its stdout/stderr are separate (a pipe the parent logs line by line: Go
panics and neonize's stray ``print`` calls land there, never in the protocol).

Framing: every frame is a 4-byte big-endian unsigned length followed by that many bytes of
UTF-8 JSON holding one object. Frames larger than `MAX_FRAME` are a protocol error (the
reader closes the channel; the parent then treats the child as crashed).

Frames, parent → child (requests)::

    {"id": 7, "op": "connect", "args": {"db": PATH|DSN, "uuid": SLUG, "proxy": URL|null,
                                        "jid": JID|null, "new_device": bool}}
    ops: connect, send_text {to,text,message_id}, pair_phone {phone}, logout, ping,
         shutdown {grace}

Frames, child → parent::

    {"hello": {"pid": 123, "neonize": "0.5.2", "import_s": 0.48}}   once, after import
    {"id": 7, "ok": true, "result": ...}                               reply
    {"id": 7, "ok": false, "error": {"kind", "message", "cause"?, "expires_at"?}}
    {"event": {"type": "QrCode", ...fields}}                           an engine event
    {"log": {"level": "INFO", "logger": "whatsmeow.Client", "msg": "..."}}

Replies carry the request's ``id``; events and logs may interleave with replies. Engine
events are our own `wafleet.engines.base` dataclasses (the child maps neonize's protobuf
events before sending them), encoded by `encode_event` / `decode_event` below, so the
parent never imports neonize.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import struct
from datetime import datetime
from typing import Any

from wafleet.engines import base
from wafleet.states import Cause

MAX_FRAME = 4 * 1024 * 1024
_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """A malformed or oversized frame: the channel can no longer be trusted."""


def encode_frame(obj: dict[str, Any]) -> bytes:
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return _HEADER.pack(len(body)) + body


def _decode_body(body: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ProtocolError(f"undecodable frame: {err}") from err
    if not isinstance(obj, dict):
        raise ProtocolError("a frame must hold a JSON object")
    return obj


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next frame, or None at a clean end of stream (between frames)."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as err:
        if not err.partial:
            return None
        raise ProtocolError("stream ended inside a frame header") from err
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ProtocolError(f"frame of {size} bytes exceeds {MAX_FRAME}")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError as err:
        raise ProtocolError("stream ended inside a frame") from err
    return _decode_body(body)


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            if remaining == size:
                return None
            raise ProtocolError("stream ended inside a frame")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame_sync(sock: socket.socket) -> dict[str, Any] | None:
    """Blocking variant for the child (which has no event loop)."""
    header = _recv_exactly(sock, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ProtocolError(f"frame of {size} bytes exceeds {MAX_FRAME}")
    body = _recv_exactly(sock, size) if size else b""
    if body is None:
        raise ProtocolError("stream ended inside a frame")
    return _decode_body(body)


# --------------------------------------------------------------------------- events

_EVENT_TYPES: dict[str, type[base.EngineEvent]] = {
    cls.__name__: cls
    for cls in (
        base.QrCode,
        base.PairSuccess,
        base.PairCode,
        base.Connected,
        base.KeepAliveTimeout,
        base.KeepAliveRestored,
        base.ConnectionLost,
        base.LoggedOut,
        base.Replaced,
        base.TemporaryBan,
        base.ClientOutdated,
        base.QrTimeout,
        base.IncomingMessage,
        base.Receipt,
    )
}


def encode_event(ev: base.EngineEvent) -> dict[str, Any]:
    name = type(ev).__name__
    if name not in _EVENT_TYPES:
        raise ProtocolError(f"not an engine event: {name}")
    out: dict[str, Any] = {"type": name}
    for f in dataclasses.fields(ev):
        value = getattr(ev, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, Cause):
            value = value.value
        out[f.name] = value
    return out


def decode_event(data: dict[str, Any]) -> base.EngineEvent:
    name = data.get("type")
    cls = _EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ProtocolError(f"unknown event type {name!r}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name == "cause" and value is not None:
            value = Cause(value)
        elif f.name in ("at", "expires_at") and isinstance(value, str):
            value = datetime.fromisoformat(value)
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ProtocolError(f"bad {name} event: {err}") from err
