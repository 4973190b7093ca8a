"""Optional sampling profile of a process during a measured phase, with py-spy when it
is installed (``pip install py-spy``; not a dependency): collapsed stacks written to a
file (``--keep`` keeps it) — how the worker's hot spots in docs/BENCHMARKS.md were found."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path


@contextlib.asynccontextmanager
async def pyspy(pid: int, out: Path, *, enabled: bool, idle: bool = False) -> AsyncIterator[None]:
    exe = shutil.which("py-spy") if enabled else None
    if exe is None:
        yield
        return
    args = [exe, "record", "--pid", str(pid), "--format", "raw", "-o", str(out), "--rate", "250"]
    if idle:
        args.append("--idle")
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        yield
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
