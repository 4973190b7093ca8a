"""Browser tests run Playwright in Debian's Chromium (`.ci/run` installs it with apt)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import Proc, free_port, wait_http_ok

CHROMIUM = Path(os.environ.get("WAFLEET_CHROMIUM", "/usr/bin/chromium"))
REQUIRE_ENV = "WAFLEET_REQUIRE_BROWSER"


def require_chromium() -> Path:
    """The Chromium executable; skip the test when it is missing, or fail when
    ``WAFLEET_REQUIRE_BROWSER=1`` (CI) says it must be there."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    reason = f"Chromium not found at {CHROMIUM} (apt-get install chromium, or run .ci/run)"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"browser required ({REQUIRE_ENV}=1): {reason}")
    pytest.skip(reason)


# The flags the project asks for: headless, no sandbox (root in CI), no GPU, no traffic of
# Chromium's own (it must stay on loopback).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A Playwright browser in Debian's Chromium, closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(require_chromium()), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class UpStack:
    portal: str
    sim: str
    proc: Proc


@contextlib.contextmanager
def wafleet_up(env: dict[str, str], data: Path) -> Iterator[UpStack]:
    """``wafleet up --simulator`` on free loopback ports, until its login page answers."""
    port, cp_port, sim_port = free_port(), free_port(), free_port()
    args = ["up", "--simulator", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--control-plane-port", str(cp_port), "--simulator-port", str(sim_port)]
    proc = Proc(args, env, data / "up.log")
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/login", timeout=60)
        yield UpStack(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}", proc)
    finally:
        proc.stop()
