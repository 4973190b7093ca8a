"""The worker side never loads neonize; the child neutralises its import-time logging."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

PARENT_SIDE = """
import logging, sys
from wafleet.engines.factory import build_engine
from wafleet.engines.neonize import NeonizeEngine
import wafleet.engines.neonize.engine, wafleet.engines.neonize.process
import wafleet.engines.neonize.protocol, wafleet.engines.neonize.qr
assert NeonizeEngine.name == "neonize"
loaded = sorted(m for m in sys.modules if m == "neonize" or m.startswith("neonize."))
assert not loaded, loaded
assert not logging.getLogger().handlers
print("ok")
"""

CHILD_LOGGING = """
import logging, socket
from wafleet.engines.neonize import child
a, b = socket.socketpair()
handler = child._configure_logging(child.Channel(a), "INFO")
import neonize  # calls logging.basicConfig at import
assert logging.getLogger().handlers == [handler], logging.getLogger().handlers
print("ok")
"""


def run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_parent_side_does_not_import_neonize() -> None:
    assert run(PARENT_SIDE) == "ok"


def test_child_logging_survives_neonize_import() -> None:
    assert run(CHILD_LOGGING) == "ok"


ORPHANING_PARENT = """
import asyncio, os
from wafleet.engines.neonize.process import ChildProcess

async def main():
    child = ChildProcess("orphan")
    await child.start()
    print(child.pid, flush=True)
    os._exit(0)  # the worker dies without cleaning up (kill -9 / OOM)

asyncio.run(main())
"""


def test_child_dies_with_its_worker() -> None:
    pid = int(run(ORPHANING_PARENT))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"engine child {pid} outlived its worker")
