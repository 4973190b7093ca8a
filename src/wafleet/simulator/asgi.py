"""The simulator as one raw ASGI application: engines' WebSocket at ``/ws``, the control
API under ``/sim/``, the phone page at ``/``.

Raw ASGI rather than a framework: the WebSocket path is the benchmark load generator's hot
loop, so each frame costs one dict lookup and one ``Simulator.frame`` call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from wafleet.logging import get_logger
from wafleet.simulator import http_api
from wafleet.simulator.core import Simulator
from wafleet.simulator.page import phone_page
from wafleet.simulator.protocol import CLOSE_POLICY, CREDENTIALS_HEADER

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 64 * 1024 * 1024
_CRED_HEADER = CREDENTIALS_HEADER.encode()
log = get_logger("wafleet.simulator")


class SimulatorApp:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._writers: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.sim.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ------------------------------------------------------------------ websocket

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        if scope["path"] != "/ws":
            await send({"type": "websocket.close", "code": CLOSE_POLICY})
            return
        token: str | None = None
        for name, value in scope["headers"]:
            if name == _CRED_HEADER:
                token = value.decode("latin-1")
        verdict, conn = self.sim.handshake(token)
        if conn is None:  # refused: uvicorn answers the upgrade with 403
            await send({"type": "websocket.close", "code": CLOSE_POLICY})
            return
        sim = self.sim
        try:
            await send({"type": "websocket.accept"})
            if verdict == "drop":
                conn.abort()

            async def send_text(text: str) -> None:
                await send({"type": "websocket.send", "text": text})

            async def close(code: int) -> None:
                await send({"type": "websocket.close", "code": code})

            writer = asyncio.create_task(
                conn.run_writer(send_text, close), name=f"sim-ws-writer-{conn.id}"
            )
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
            try:
                while True:
                    msg = await receive()
                    mtype = msg["type"]
                    if mtype == "websocket.receive":
                        data = msg.get("text")
                        if data is None:
                            data = msg.get("bytes") or b""
                        sim.frame(conn, data)
                    elif mtype == "websocket.disconnect":
                        break
            finally:
                sim.closed(conn)
                if not writer.done():
                    writer.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await writer
        except OSError:
            pass
        finally:
            sim.closed(conn)

    # ------------------------------------------------------------------ http

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        body = bytearray()
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if len(body) > MAX_BODY:
                await _respond(send, 413, _err("too_large", "the body is too large"))
                return
        if path == "/" and method in ("GET", "HEAD"):
            await _respond_raw(send, 200, phone_page(), b"text/html; charset=utf-8")
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        try:
            status, payload = http_api.dispatch(self.sim, method, path, query, bytes(body))
        except Exception:  # a bug must still answer JSON, and be visible in the log
            log.exception("simulator control API failure", path=path)
            status, payload = 500, _err("internal", "internal simulator error")
        await _respond(send, status, payload)


def _err(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


async def _respond(send: Send, status: int, payload: Any) -> None:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    await _respond_raw(send, status, body, b"application/json")


async def _respond_raw(send: Send, status: int, body: bytes, ctype: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", ctype),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
