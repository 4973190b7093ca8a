"""Real uvicorn servers on loopback, each in its own thread and event loop, so a test can
drive them with a plain HTTP client and still look at the app's in-process state."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn

from tests.support.procs import free_port


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ServerThread:
    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=3,
        )
        self.server = _Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn:{self.port}")

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@contextlib.contextmanager
def serving(app: Any, port: int | None = None) -> Iterator[ServerThread]:
    srv = ServerThread(app, port).start()
    try:
        yield srv
    finally:
        srv.stop()


CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    m = CSRF_RE.search(html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def login(base_url: str, email: str, password: str) -> httpx.Client:
    """A client holding a logged-in portal session."""
    client = httpx.Client(base_url=base_url, timeout=10, follow_redirects=False)
    page = client.get("/login")
    resp = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": csrf_of(page.text)},
    )
    assert resp.status_code == 303, resp.text
    return client


def page_csrf(client: httpx.Client, path: str = "/app/status") -> str:
    resp = client.get(path)
    assert resp.status_code == 200, resp.text
    return csrf_of(resp.text)
