"""A real webhook receiver on 127.0.0.1 (its own thread, one thread per request) that
verifies ``X-Wafleet-Signature`` and behaves by the message text's first word:

    ok ...          200 {"reply": "hook: <text>"}
    slow N ...      sleeps N s, then like ok
    flaky N ...     503 for the first N attempts of that message id, then like ok
    fail CODE ...   answers CODE every time
    silent ...      200 with no reply
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.procs import free_port


@dataclass
class Call:
    at: float  # monotonic, when the request arrived
    signature_ok: bool
    body: dict[str, Any]

    @property
    def text(self) -> str:
        return str(self.body["message"]["text"])


@dataclass
class HookReceiver:
    secret: str
    port: int = field(default_factory=free_port)
    calls: list[Call] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)  # message id → requests
    in_flight: set[str] = field(default_factory=set)  # texts being answered right now
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def texts(self) -> list[str]:
        with self.lock:
            return [c.text for c in self.calls]

    def calls_for(self, text: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.text == text]

    def handle(self, raw: bytes, signature: str | None) -> tuple[int, dict[str, Any] | None]:
        expected = "sha256=" + hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest()
        ok = signature is not None and hmac.compare_digest(signature, expected)
        body = json.loads(raw)
        text = str(body["message"]["text"])
        with self.lock:
            self.calls.append(Call(time.monotonic(), ok, body))
            self.attempts[body["message"]["id"]] += 1
            n = self.attempts[body["message"]["id"]]
        if not ok:
            return 401, None
        word, *rest = text.split()
        if word == "slow":
            with self.lock:
                self.in_flight.add(text)
            try:
                time.sleep(float(rest[0]))
            finally:
                with self.lock:
                    self.in_flight.discard(text)
        elif word == "flaky" and n <= int(rest[0]):
            return 503, None
        elif word == "fail":
            return int(rest[0]), None
        elif word == "silent":
            return 200, None
        return 200, {"reply": f"hook: {text}"}


@contextmanager
def running_hook(secret: str) -> Iterator[HookReceiver]:
    hook = HookReceiver(secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            status, payload = hook.handle(raw, self.headers.get("x-wafleet-signature"))
            out = json.dumps(payload).encode() if payload is not None else b""
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (its timeout): that is what some tests do

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", hook.port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="hook-receiver", daemon=True
    )
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
