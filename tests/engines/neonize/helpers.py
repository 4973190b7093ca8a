"""Shared bits of the neonize engine tests."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from wafleet.config import Settings
from wafleet.engines.base import ConnectionLost, EngineContext, EngineEvent
from wafleet.engines.credentials import FileCredentialStore
from wafleet.engines.neonize import NeonizeEngine
from wafleet.engines.neonize.process import ChildProcess

FAKE_CHILD = "tests.engines.neonize.fake_child"


class Recorder:
    def __init__(self) -> None:
        self.events: list[EngineEvent] = []

    async def __call__(self, ev: EngineEvent) -> None:
        self.events.append(ev)

    def lost(self) -> list[ConnectionLost]:
        return [e for e in self.events if isinstance(e, ConnectionLost)]

    async def wait_for(self, pred: Callable[[EngineEvent], bool], timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev in self.events:
                if pred(ev):
                    return ev
            await asyncio.sleep(0.02)
        raise AssertionError(f"no matching event within {timeout}s: {self.events}")


def make_engine(
    tmp_path: Path,
    *,
    slug: str = "acme",
    settings: Settings | None = None,
    extra: dict[str, object] | None = None,
    **kwargs: Any,
) -> tuple[NeonizeEngine, Recorder]:
    rec = Recorder()
    session_dir = tmp_path / "sessions" / slug
    ctx = EngineContext(
        tenant_slug=slug,
        session_dir=session_dir,
        credentials=FileCredentialStore(session_dir),
        sink=rec,
        extra=extra or {},
    )
    engine = NeonizeEngine(ctx, settings or Settings(data_dir=tmp_path), **kwargs)
    return engine, rec


def fake_child_factory(slug: str, mode: str) -> Callable[[], ChildProcess]:
    env = {**os.environ, "FAKE_CHILD_MODE": mode}
    return lambda: ChildProcess(slug, module=FAKE_CHILD, env=env)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def engine_children() -> list[psutil.Process]:
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "wafleet.engines.neonize.child" in " ".join(p.cmdline()) and p.status() != "zombie":
                out.append(p)
        except psutil.Error:
            continue
    return out


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


class Blackhole:
    """A loopback listener that accepts TCP connections and never answers: a proxy on it
    makes neonize's dial hang the way a black-holed route does."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])

    @property
    def proxy(self) -> str:
        return f"socks5://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.sock.close()
