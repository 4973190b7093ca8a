"""Real processes for end-to-end tests: free loopback ports, a `wafleet` subprocess
runner that captures output to a file and is always reaped, and deadline-bounded waits."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")
WAFLEET = [sys.executable, "-m", "wafleet"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], T | None],
    *,
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` s.

    Used only where a real process is on the other side (nothing to inject a clock into).
    """
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the process may not be up yet
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}"
                + (f" (last error: {last_exc!r})" if last_exc else "")
            )
        time.sleep(interval)


def wait_http_ok(url: str, *, timeout: float = 20.0) -> None:
    def ok() -> bool:
        return httpx.get(url, timeout=1.0).status_code < 500

    wait_until(ok, timeout=timeout, what=f"{url} to answer")


class Proc:
    """A running ``wafleet ...`` process; output goes to ``log_path``."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            WAFLEET + args,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.popen.pid, sig)

    def kill9(self) -> None:
        """SIGKILL the process and its whole group (its engine children too)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        # reap stray children (engine processes) of the group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self._log.close()
        return self.popen.returncode


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], log_path: Path) -> Iterator[Proc]:
    proc = Proc(args, env, log_path)
    try:
        yield proc
    finally:
        proc.stop()


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a wafleet process: only PATH-like basics plus WAFLEET_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAFLEET_")}
    env.update(
        {
            "WAFLEET_DATA_DIR": str(data_dir),
            "WAFLEET_LOG_FORMAT": "json",
            "WAFLEET_PORTAL_KEY": "k" * 40,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env
