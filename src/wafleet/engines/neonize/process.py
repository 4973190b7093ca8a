"""Parent side of one engine child process: spawn, request/reply with deadlines, kill, reap.

`ChildProcess` never imports neonize. Everything the child says that is not a reply (engine
events, log records, its stdout/stderr lines, finally its exit) is put, in order, on one
queue that the engine drains — the reader itself never waits on the engine, so an event
handler may call back into the child without deadlocking.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import sys
from collections import deque
from dataclasses import dataclass
from typing import Any

from wafleet.engines.neonize.protocol import ProtocolError, encode_frame, read_frame

CHILD_MODULE = "wafleet.engines.neonize.child"
START_TIMEOUT = 30.0  # interpreter + neonize import + Go runtime; ~0.5 s when warm
OUTPUT_TAIL = 20  # last stdout/stderr lines kept for a crash report


class ChildDied(Exception):
    """The child exited (or its channel broke) before answering."""


class ChildHung(Exception):
    """The child did not answer within the deadline."""


class ChildRequestFailed(Exception):
    """The child answered with an error."""

    def __init__(self, error: dict[str, Any]) -> None:
        self.kind = str(error.get("kind", "error"))
        self.message = str(error.get("message", ""))
        self.cause: str | None = error.get("cause")
        self.expires_at: str | None = error.get("expires_at")
        super().__init__(self.message)


@dataclass(frozen=True)
class ChildExit:
    """The last item on a child's queue: it is gone."""

    returncode: int | None
    output_tail: str


class ChildProcess:
    def __init__(
        self,
        tenant: str,
        *,
        log_level: str = "INFO",
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        module: str = CHILD_MODULE,
    ) -> None:
        self.tenant = tenant
        self.module = module  # tests substitute a scripted child speaking the same protocol
        self.log_level = log_level
        self.python = python
        self.env = env
        self.queue: asyncio.Queue[dict[str, Any] | ChildExit] = asyncio.Queue()
        self.hello: dict[str, Any] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._tail: deque[str] = deque(maxlen=OUTPUT_TAIL)
        self._reader_task: asyncio.Task[None] | None = None
        self._output_task: asyncio.Task[None] | None = None
        self._hello = asyncio.Event()
        self._gone = asyncio.Event()
        self.returncode: int | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and not self._gone.is_set()

    # ------------------------------------------------------------------ lifecycle
    async def start(self, timeout: float = START_TIMEOUT) -> None:
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                self.module,
                "--fd",
                str(child_sock.fileno()),
                "--tenant",
                self.tenant,
                "--parent-pid",
                str(os.getpid()),
                "--log-level",
                self.log_level,
                pass_fds=(child_sock.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
            )
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        try:
            reader, self._writer = await asyncio.open_unix_connection(sock=parent_sock)
        except BaseException:
            parent_sock.close()
            await self.kill()
            raise
        self._reader_task = asyncio.create_task(
            self._read_loop(reader), name=f"neonize-child-reader:{self.tenant}"
        )
        self._output_task = asyncio.create_task(
            self._output_loop(), name=f"neonize-child-output:{self.tenant}"
        )
        hello = asyncio.create_task(self._hello.wait(), name=f"neonize-child-hello:{self.tenant}")
        gone = asyncio.create_task(self._gone.wait(), name=f"neonize-child-gone:{self.tenant}")
        try:
            await asyncio.wait({hello, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (hello, gone):
                t.cancel()
            await asyncio.gather(hello, gone, return_exceptions=True)
        if not self._hello.is_set():
            await self.kill()
            if self.returncode is not None and self.returncode != -signal.SIGKILL:
                raise ChildDied(self._exit_detail())
            raise ChildHung(f"engine process did not start within {timeout:g}s")

    async def request(self, op: str, args: dict[str, Any] | None = None, *, timeout: float) -> Any:
        """Send a request and wait for its reply; ChildHung after ``timeout`` seconds."""
        if self._writer is None or self._gone.is_set():
            raise ChildDied(self._exit_detail())
        req_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        try:
            try:
                self._writer.write(encode_frame({"id": req_id, "op": op, "args": args or {}}))
                await self._writer.drain()
            except (OSError, RuntimeError) as err:
                raise ChildDied(f"engine process channel broke: {err}") from err
            try:
                return await asyncio.wait_for(asyncio.shield(fut), timeout)
            except TimeoutError as err:
                raise ChildHung(
                    f"engine process did not answer {op!r} within {timeout:g}s"
                ) from err
        finally:
            self._pending.pop(req_id, None)
            if not fut.done():
                fut.cancel()

    async def stop(self, grace: float = 2.0) -> None:
        """Ask the child to stop its client and exit; kill it if it takes longer."""
        if self._proc is None:
            return
        if not self._gone.is_set():
            with contextlib.suppress(ChildDied, ChildHung, ChildRequestFailed):
                await self.request("shutdown", {"grace": grace}, timeout=grace + 1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._gone.wait(), 1.0)
        await self.kill()

    async def kill(self) -> None:
        """SIGKILL (if still running) and reap; releases every descriptor. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
        await proc.wait()
        self.returncode = proc.returncode
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await self._writer.wait_closed()
        for task in (self._reader_task, self._output_task):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), 2.0)
        for task in (self._reader_task, self._output_task):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def signal(self, sig: int) -> None:
        """For tests and operators: signal the child directly."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(sig)

    # ------------------------------------------------------------------ readers
    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                try:
                    frame = await read_frame(reader)
                except (ProtocolError, OSError) as err:
                    self._tail.append(f"protocol error: {err}")
                    break
                if frame is None:
                    break
                self._on_frame(frame)
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ChildDied("engine process exited"))
            # Closing our end makes a still-running child see EOF and exit.
            if self._writer is not None:
                self._writer.close()
            if self._proc is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._proc.wait(), 5.0)
                if self._proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        self._proc.send_signal(signal.SIGKILL)
                    await self._proc.wait()
                self.returncode = self._proc.returncode
            if self._output_task is not None:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(self._output_task), 2.0)
            self._gone.set()
            self.queue.put_nowait(ChildExit(self.returncode, "\n".join(self._tail)))

    def _on_frame(self, frame: dict[str, Any]) -> None:
        if "id" in frame and "ok" in frame:
            fut = self._pending.get(frame["id"])
            if fut is None or fut.done():
                return
            if frame["ok"]:
                fut.set_result(frame.get("result"))
            else:
                err = frame.get("error")
                fut.set_exception(ChildRequestFailed(err if isinstance(err, dict) else {}))
        elif "hello" in frame:
            self.hello = frame["hello"] if isinstance(frame["hello"], dict) else {}
            self._hello.set()
        else:
            self.queue.put_nowait(frame)

    async def _output_loop(self) -> None:
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        while True:
            line = await proc.stdout.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self._tail.append(text)
                self.queue.put_nowait({"output": text})

    def _exit_detail(self) -> str:
        code = self.returncode
        what = (
            f"killed by signal {-code}"
            if code is not None and code < 0
            else f"exited with code {code}"
        )
        tail = next((line for line in reversed(self._tail) if line.strip()), "")
        return f"engine process {what}" + (f": {tail}" if tail else "")

    def exit_detail(self) -> str:
        return self._exit_detail()
