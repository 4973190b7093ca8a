"""The engine child process: ``python -m wafleet.engines.neonize.child --fd N --tenant SLUG``.

It hosts exactly one neonize client for one tenant and speaks the framed protocol of
`protocol.py` on the inherited socket. Logging is set up *before* ``import neonize`` so the
library's import-time ``logging.basicConfig`` finds a configured root logger and does
nothing; every log record — whatsmeow's Go log lines included — is forwarded to the
parent, which tags it with the tenant and routes it into the tenant's log file.

The child exits when the parent says ``shutdown``, when the socket closes (the parent is
gone), or — Linux — when the parent process dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from typing import Any

from wafleet.engines.neonize.protocol import ProtocolError, encode_frame, read_frame_sync

_PR_SET_PDEATHSIG = 1


class Channel:
    """Frames to the parent from any thread; the parent being gone ends this process."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()

    def send(self, obj: dict[str, Any]) -> None:
        data = encode_frame(obj)
        try:
            with self._lock:
                self.sock.sendall(data)
        except OSError:
            os._exit(0)  # nobody left to report to


class ForwardHandler(logging.Handler):
    """Every log record of the child becomes a ``log`` frame."""

    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:
            msg = str(record.msg)
        self.channel.send({"log": {"level": record.levelname, "logger": record.name, "msg": msg}})


def _configure_logging(channel: Channel, level: str) -> ForwardHandler:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = ForwardHandler(channel)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def _die_with_parent(parent_pid: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if parent_pid and os.getppid() != parent_pid:
        os._exit(0)  # the parent died before the death signal was armed


def _stop_and_exit(session: Any, grace: float, reply: Any = None) -> None:
    if session is not None:
        stopper = threading.Thread(target=session.stop, name="neonize-stop", daemon=True)
        stopper.start()
        # Stop() blocks for as long as a hung dial does: don't wait for it past the grace.
        stopper.join(grace)
    if reply is not None:
        reply()
    os._exit(0)


def _command_loop(
    session: Any, commands: queue.Queue[tuple[int | None, str, dict[str, Any]]], ch: Channel
) -> None:
    from wafleet.engines.neonize.session import RemoteError

    log = logging.getLogger("wafleet.child")
    while True:
        req_id, op, args = commands.get()
        try:
            result = session.run_command(op, args)
        except RemoteError as err:
            if req_id is None:
                log.warning("%s failed: %s", op, err.message)
            else:
                ch.send({"id": req_id, "ok": False, "error": err.to_json()})
            continue
        except Exception as err:  # a Go-side error string, a bad argument ...
            message = f"{type(err).__name__}: {err}"
            if req_id is None:
                log.warning("%s failed: %s", op, message)
            else:
                ch.send({"id": req_id, "ok": False, "error": {"kind": "error", "message": message}})
            continue
        if req_id is not None:
            ch.send({"id": req_id, "ok": True, "result": result})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wafleet.engines.neonize.child")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _die_with_parent(args.parent_pid)
    os.umask(0o077)  # neonize's sqlite store (and its -wal/-shm) are created 0600

    sock = socket.socket(fileno=args.fd)
    channel = Channel(sock)
    level = args.log_level.upper()
    handler = _configure_logging(channel, level)

    started = time.monotonic()
    import neonize  # heavy (~50 MB, loads the Go library): only ever in this process

    from wafleet.engines.neonize.session import Session

    root = logging.getLogger()
    for h in list(root.handlers):  # in case the import managed to add its own handler
        if h is not handler:
            root.removeHandler(h)
    # neonize hands this logger's level to Go as whatsmeow's log level at connect()
    logging.getLogger("neonize.utils.log").setLevel(level)
    # we never touch media: the "ffmpeg not found" warning on every connect is noise
    logging.getLogger("neonize.utils.ffmpeg").setLevel(logging.ERROR)
    import_s = time.monotonic() - started

    commands: queue.Queue[tuple[int | None, str, dict[str, Any]]] = queue.Queue()
    session = Session(channel.send, lambda op, a: commands.put((None, op, a)))
    threading.Thread(
        target=_command_loop, args=(session, commands, channel), name="go-calls", daemon=True
    ).start()
    channel.send(
        {"hello": {"pid": os.getpid(), "neonize": neonize.__version__, "import_s": import_s}}
    )

    while True:
        try:
            frame = read_frame_sync(sock)
        except (OSError, ProtocolError):
            frame = None
        if frame is None:
            _stop_and_exit(session, 1.0)
            return 0
        req_id = frame.get("id")
        op = frame.get("op")
        fargs = frame.get("args") or {}
        if not isinstance(req_id, int) or not isinstance(op, str) or not isinstance(fargs, dict):
            logging.getLogger("wafleet.child").warning("ignoring malformed request frame")
            continue
        if op == "ping":
            channel.send({"id": req_id, "ok": True, "result": {"pid": os.getpid()}})
        elif op == "shutdown":
            grace = float(fargs.get("grace", 2.0))
            _stop_and_exit(
                session, grace, lambda i=req_id: channel.send({"id": i, "ok": True, "result": {}})
            )
        else:
            commands.put((req_id, op, fargs))


if __name__ == "__main__":
    sys.exit(main())
