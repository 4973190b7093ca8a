"""The webhook path across real processes: messages no rule answers are POSTed, signed,
to a real HTTP server; a 503 is retried; replies keep the chat's order."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.e2e.conftest import SLUG, Stack
from tests.support.procs import free_port

pytestmark = pytest.mark.slow

SECRET = "s3cret-s3cret"


class Hook:
    """A webhook receiver that fails every message's first delivery with 503."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, dict[str, Any]]] = []  # (signature ok, body)
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["content-length"]))
                expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
                body = json.loads(raw)
                with hook.lock:
                    hook.calls.append((self.headers.get("x-wafleet-signature") == expected, body))
                    hook.hits[body["message"]["id"]] += 1
                    first = hook.hits[body["message"]["id"]] == 1
                if first:
                    self.send_response(503)
                    self.end_headers()
                    return
                out = json.dumps({"reply": "hook: " + body["message"]["text"]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="e2e-hook")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    h.thread.start()
    try:
        yield h
    finally:
        h.server.shutdown()
        h.server.server_close()
        h.thread.join(5)


def test_unanswered_messages_go_to_the_webhook_signed_retried_in_order(
    stack: Stack, hook: Hook
) -> None:
    stack.env_overrides["WAFLEET_WEBHOOK_ALLOW_PRIVATE"] = "true"
    rules = stack.root / "rules-hook.json"
    rules.write_text(
        json.dumps(
            {
                "rules": [{"match": "keyword", "pattern": "price", "reply": "cheap"}],
                "webhook": {"url": hook.url, "secret": SECRET},
            }
        )
    )
    stack.cli("tenant", "configure", SLUG, "--rules", str(rules))
    stack.start_worker()
    stack.link()

    chat = "+15551111000"
    texts = ["one", "price?", "two", "three", "price!"]
    ids = [stack.inbound(chat, t) for t in texts]
    out = stack.wait_outbound(5, timeout=40)
    assert [m["text"] for m in out] == ["hook: one", "cheap", "hook: two", "hook: three", "cheap"]
    assert [m["id"] for m in out] == [f"R-{i}" for i in ids]

    hooked = {ids[0], ids[2], ids[3]}
    assert set(hook.hits) == hooked  # rule-answered messages never reach the webhook
    assert all(n == 2 for n in hook.hits.values())  # the 503 was retried once
    assert all(ok for ok, _ in hook.calls), "bad signature"
    body = hook.calls[0][1]
    assert body["tenant"] == SLUG
    assert set(body["message"]) == {"id", "chat", "sender", "text", "at"}
    assert (body["message"]["chat"], body["message"]["text"]) == (chat, "one")
    assert [r["status"] for r in stack.messages("in")] == ["PROCESSED"] * 5
