"""Real processes for the benchmarks: ``python -m wafleet ...`` children with their output
in a file, always reaped; free loopback ports; bounded waits; RSS and CPU via psutil.

A minimal copy of what ``tests/support/procs.py`` does (src/ must not import tests/).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, TypeVar

import httpx
import psutil

from wafleet.bench.common import BenchError

T = TypeVar("T")
WAFLEET = [sys.executable, "-m", "wafleet"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The parent's environment without any WAFLEET_* (the bench decides every setting)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAFLEET_")}
    env.update(
        {
            "WAFLEET_DATA_DIR": str(data_dir),
            "WAFLEET_LOG_FORMAT": "json",
            "WAFLEET_PORTAL_KEY": "bench-portal-key-" + "x" * 32,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class Proc:
    """One child process (its own session, so kill -9 takes its whole group)."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.ps = psutil.Process(self.popen.pid)
        self.stopped = False  # stopped by us: not a death to report

    @classmethod
    def wafleet(cls, args: list[str], env: dict[str, str], log_path: Path) -> Proc:
        return cls([*WAFLEET, *args], env, log_path)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 2000) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def cpu_seconds(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def kill9(self) -> None:
        self.stopped = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> int | None:
        self.stopped = True
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # strays of the group
        self._log.close()
        return self.popen.returncode


class Procs:
    """Every process a scenario started; ``stop_all`` in reverse order of start."""

    def __init__(self) -> None:
        self.items: list[Proc] = []

    def add(self, proc: Proc) -> Proc:
        self.items.append(proc)
        return proc

    def stop_all(self) -> None:
        for p in reversed(self.items):
            p.stop()
        self.items.clear()

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.tail()}" for p in self.items)


async def wait_for(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    procs: Procs | None = None,
) -> T:
    """Poll ``probe`` until it returns a truthy value; BenchError after ``timeout`` s (with
    the tail of every process's output, so a failed run says why)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = await probe()
            if value:
                return value
        except (httpx.HTTPError, OSError) as err:  # not up yet
            last = err
        if procs is not None:
            dead = [p for p in procs.items if not p.stopped and not p.alive()]
            if dead:
                raise BenchError(
                    f"{dead[0].log_path.stem} exited ({dead[0].popen.returncode}) while waiting "
                    f"for {what}:\n{dead[0].tail()}"
                )
        if time.monotonic() > deadline:
            extra = f" (last error: {last!r})" if last else ""
            logs = f"\n{procs.logs()}" if procs is not None else ""
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}{extra}{logs}")
        await asyncio.sleep(interval)


async def wait_http(url: str, *, timeout: float = 30.0, procs: Procs | None = None) -> None:
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:

        async def ok() -> bool:
            return (await client.get(url)).status_code < 500

        await wait_for(ok, timeout=timeout, what=f"{url} to answer", procs=procs)
