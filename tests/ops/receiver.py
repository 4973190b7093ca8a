"""A real operator-alert receiver: an HTTP server on 127.0.0.1 (own thread) that checks
each request's ``X-Wafleet-Signature`` against the key and records the alerts."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    key: str
    port: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    requests: int = 0
    # status codes to answer with, one per request, before answering 200 for good
    script: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts"

    def kinds(self) -> list[str]:
        with self.lock:
            return [a["kind"] for a in self.alerts]

    def handle(self, body: bytes, signature: str | None) -> int:
        expected = "sha256=" + hmac.new(self.key.encode(), body, hashlib.sha256).hexdigest()
        with self.lock:
            self.requests += 1
            if signature is None or not hmac.compare_digest(signature, expected):
                self.bad_signatures += 1
                return 401
            status = self.script.pop(0) if self.script else 200
            if status == 200:
                self.alerts.append(json.loads(body))
            return status


@contextmanager
def running_receiver(key: str) -> Iterator[Receiver]:
    receiver = Receiver(key)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            status = receiver.handle(body, self.headers.get("X-Wafleet-Signature"))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, name="alert-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
