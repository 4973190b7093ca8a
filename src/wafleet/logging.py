"""Logging: structlog to stdout (pretty on a tty, JSON otherwise) and, for every event
bound to a tenant (``tenant=<slug>``), a JSON line in ``<data dir>/logs/<slug>.log``.

Tenant files are written by one background thread fed through a queue, so the event loop
never waits on disk; the thread keeps at most `MAX_OPEN_FILES` handles open (LRU), so a
worker with thousands of tenants does not hold thousands of descriptors; files rotate by
size (``<slug>.log.1`` ... ``.N``).
"""

from __future__ import annotations

import json
import logging as stdlib_logging
import os
import queue
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

MAX_OPEN_FILES = 64
MAX_FILE_BYTES = 5 * 1024 * 1024
BACKUP_COUNT = 3
_QUEUE_MAX = 100_000

_SLUG_SAFE = set("abcdefghijklmnopqrstuvwxyz0123456789-_")


def tenant_log_path(logs_dir: Path, slug: str) -> Path:
    safe = "".join(c if c in _SLUG_SAFE else "_" for c in slug.lower()) or "_"
    return logs_dir / f"{safe}.log"


_Line = tuple[str, str]  # (slug, JSON line)
_Item = _Line | threading.Event | None


class TenantFileWriter:
    """Background writer of per-tenant JSON-lines files with a bounded handle cache."""

    def __init__(
        self,
        logs_dir: Path,
        *,
        max_open: int = MAX_OPEN_FILES,
        max_bytes: int = MAX_FILE_BYTES,
        backups: int = BACKUP_COUNT,
        queue_max: int = _QUEUE_MAX,
    ) -> None:
        self.logs_dir = logs_dir
        self.max_open = max_open
        self.max_bytes = max_bytes
        self.backups = max(1, backups)
        # items: a line, a flush marker (set once everything before it is written), or
        # None (stop)
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=queue_max)
        self._open: OrderedDict[str, TextIO] = OrderedDict()
        self._thread: threading.Thread | None = None
        self.dropped = 0

    # -- producer side (any thread, never blocks) --------------------------------
    def write(self, slug: str, line: str) -> None:
        try:
            self._queue.put_nowait((slug, line))
        except queue.Full:
            self.dropped += 1  # a log line is not worth stalling the event loop

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self.logs_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        self._thread = threading.Thread(target=self._run, name="tenant-log-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        thread = self._thread
        if thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass  # the thread is stuck on disk; it is a daemon, do not hang shutdown on it
        thread.join(timeout)
        self._thread = None

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is written (tests, shutdown).
        False when that did not happen within ``timeout``."""
        if self._thread is None:
            return False
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    # -- writer thread -----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            batch: list[_Line | threading.Event] = [item]
            # drain what is there so one flush covers many lines
            while len(batch) < 1000:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._write_batch(batch)
                    self._close_all()
                    return
                batch.append(nxt)
            self._write_batch(batch)
        self._close_all()

    def _write_batch(self, batch: list[_Line | threading.Event]) -> None:
        touched: set[str] = set()
        for item in batch:
            if isinstance(item, threading.Event):
                self._flush_files(touched)
                item.set()
                continue
            slug, line = item
            try:
                fh = self._handle(slug)
                fh.write(line + "\n")
                touched.add(slug)
                if fh.tell() >= self.max_bytes:
                    self._rotate(slug)
            except OSError:
                continue
        self._flush_files(touched)

    def _flush_files(self, touched: set[str]) -> None:
        for slug in touched:
            fh = self._open.get(slug)
            if fh is not None:
                try:
                    fh.flush()
                except OSError:
                    pass
        touched.clear()

    def _handle(self, slug: str) -> TextIO:
        fh = self._open.get(slug)
        if fh is not None:
            self._open.move_to_end(slug)
            return fh
        while len(self._open) >= self.max_open:
            _, old = self._open.popitem(last=False)
            old.close()
        path = tenant_log_path(self.logs_dir, slug)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        fh = os.fdopen(fd, "a", encoding="utf-8")
        self._open[slug] = fh
        return fh

    def _rotate(self, slug: str) -> None:
        fh = self._open.pop(slug, None)
        if fh is not None:
            fh.close()
        path = tenant_log_path(self.logs_dir, slug)
        for i in range(self.backups - 1, 0, -1):
            src = path.with_name(f"{path.name}.{i}")
            if src.exists():
                os.replace(src, path.with_name(f"{path.name}.{i + 1}"))
        if path.exists():
            os.replace(path, path.with_name(f"{path.name}.1"))

    def _close_all(self) -> None:
        for fh in self._open.values():
            try:
                fh.close()
            except OSError:
                pass
        self._open.clear()

    @property
    def open_files(self) -> int:
        return len(self._open)


class _TenantFileProcessor:
    """structlog processor: copies events that carry ``tenant`` into that tenant's file."""

    def __init__(self, writer: TenantFileWriter) -> None:
        self.writer = writer

    def __call__(self, _logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
        slug = event_dict.get("tenant")
        if isinstance(slug, str) and slug:
            try:
                line = json.dumps(event_dict, default=str, ensure_ascii=False)
            except (TypeError, ValueError):
                line = json.dumps({"event": str(event_dict.get("event"))})
            self.writer.write(slug, line)
        return event_dict


_writer: TenantFileWriter | None = None


def tenant_writer() -> TenantFileWriter | None:
    return _writer


def configure_logging(
    *,
    level: str = "INFO",
    fmt: str = "auto",
    logs_dir: Path | None = None,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and the stdlib root logger. Call once, in the top-level runner."""
    global _writer
    out = stream or sys.stdout
    if fmt == "auto":
        fmt = "pretty" if out.isatty() else "json"
    if _writer is not None:
        _writer.stop()
        _writer = None
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if logs_dir is not None:
        _writer = TenantFileWriter(logs_dir)
        _writer.start()
        processors.append(_TenantFileProcessor(_writer))
    if fmt == "pretty":
        processors.append(structlog.dev.ConsoleRenderer(colors=out.isatty()))
    else:
        processors.append(structlog.processors.JSONRenderer(default=str, ensure_ascii=False))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            stdlib_logging.getLevelName(level.upper())
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    root = stdlib_logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = stdlib_logging.StreamHandler(out)
    handler.setFormatter(
        stdlib_logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx", "httpcore", "websockets", "aiosqlite", "asyncio"):
        stdlib_logging.getLogger(noisy).setLevel(max(stdlib_logging.WARNING, root.level))


def shutdown_logging() -> None:
    global _writer
    if _writer is not None:
        _writer.stop()
        _writer = None


def get_logger(name: str | None = None, **bound: Any) -> Any:
    return structlog.get_logger(name).bind(**bound) if bound else structlog.get_logger(name)
