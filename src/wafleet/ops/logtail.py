"""Read the end of a tenant's log (``<data dir>/logs/<slug>.log``, JSON lines written by
`wafleet.logging`) without reading the whole file, and follow it across rotation.

`tail` reads blocks backwards from the end, newest first, continuing into
``<slug>.log.1``, ``.2`` ... until it has ``n`` matching lines or has scanned
``max_scan`` bytes: memory and time stay bounded whatever the file sizes. `Follower`
returns the lines appended since its last call; when the writer rotates the file
(``<slug>.log`` → ``<slug>.log.1``), it drains the old file through the handle it still
holds, then continues with the new one. Used by ``wafleet logs`` and, for admins, by the
portal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from wafleet.logging import BACKUP_COUNT, tenant_log_path

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_ALIASES = {"warn": "warning", "exception": "error", "fatal": "critical", "notset": "debug"}
BLOCK = 64 * 1024
MAX_SCAN = 16 * 1024 * 1024
MAX_LINE = 256 * 1024  # a longer "line" is cut: one runaway record cannot eat the memory
_SKIP_KEYS = ("timestamp", "level", "event", "tenant")


def normalize_level(level: str | None) -> str | None:
    if level is None:
        return None
    name = _ALIASES.get(level.strip().lower(), level.strip().lower())
    return name if name in LEVELS else None


@dataclass(frozen=True)
class LogLine:
    raw: str
    record: dict[str, Any] | None  # None: not a JSON object (kept, shown as is)

    @classmethod
    def parse(cls, raw: str) -> LogLine:
        try:
            obj = json.loads(raw)
        except ValueError:
            return cls(raw, None)
        return cls(raw, obj if isinstance(obj, dict) else None)

    @property
    def level(self) -> str | None:
        value = self.record.get("level") if self.record else None
        return normalize_level(value) if isinstance(value, str) else None

    def at_least(self, min_level: str | None) -> bool:
        if min_level is None:
            return True
        lvl = self.level
        return lvl is not None and LEVELS[lvl] >= LEVELS[min_level]

    def text(self) -> str:
        """``2026-11-25T13:00:00Z WARNING disconnected cause=network detail=...``"""
        if self.record is None:
            return self.raw
        r = self.record
        rest = " ".join(f"{k}={_short(v)}" for k, v in r.items() if k not in _SKIP_KEYS)
        head = f"{r.get('timestamp', '-')} {(self.level or '?').upper():<8} {r.get('event', '')}"
        return f"{head} {rest}".rstrip()


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if " " not in text else json.dumps(text)


def log_files(path: Path, backups: int = BACKUP_COUNT) -> list[Path]:
    """The file and its rotated copies, newest first (those that exist)."""
    candidates = [path] + [path.with_name(f"{path.name}.{i}") for i in range(1, backups + 1)]
    return [p for p in candidates if p.is_file()]


def reverse_lines(fh: BinaryIO, end: int, budget: list[int], block: int = BLOCK) -> Iterator[str]:
    """Lines of ``fh[:end]``, last first, reading ``block`` bytes at a time from the end.
    ``budget[0]`` (bytes left to scan, shared across files) is decremented."""
    pos = end
    tail = b""
    while pos > 0 and budget[0] > 0:
        size = min(block, pos, budget[0])
        pos -= size
        budget[0] -= size
        fh.seek(pos)
        chunk = fh.read(size) + tail
        parts = chunk.split(b"\n")
        tail = parts[0][-MAX_LINE:]  # possibly incomplete: wait for the next block
        for raw in reversed(parts[1:]):
            if raw.strip():
                yield raw[:MAX_LINE].decode("utf-8", errors="replace")
    if pos == 0 and tail.strip():
        yield tail.decode("utf-8", errors="replace")


def tail(
    path: Path,
    n: int = 50,
    *,
    min_level: str | None = None,
    end: int | None = None,
    max_scan: int = MAX_SCAN,
    block: int = BLOCK,
) -> list[LogLine]:
    """The last ``n`` lines at or above ``min_level``, oldest first. ``end``: read
    ``path`` only up to that offset (what a `Follower` will take over from)."""
    found: list[LogLine] = []
    budget = [max_scan]
    for i, file in enumerate(log_files(path)):
        try:
            with open(file, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                stop = min(size, end) if (i == 0 and end is not None) else size
                for raw in reverse_lines(fh, stop, budget, block):
                    line = LogLine.parse(raw)
                    if line.at_least(min_level):
                        found.append(line)
                        if len(found) >= n:
                            return found[::-1]
        except OSError:
            continue  # rotated away between listing and opening
        if budget[0] <= 0:
            break
    return found[::-1]


def tenant_tail(
    logs_dir: Path, slug: str, n: int = 50, *, min_level: str | None = None
) -> list[LogLine]:
    """What the portal shows an admin: the tenant's last ``n`` lines (oldest first)."""
    return tail(tenant_log_path(logs_dir, slug), n, min_level=min_level)


class Follower:
    """New lines of ``path`` since the last `poll`, across rotation and truncation."""

    def __init__(self, path: Path, *, min_level: str | None = None, from_start: bool = False):
        self.path = path
        self.min_level = min_level
        self._fh: BinaryIO | None = None
        self._ino: int | None = None
        self._partial = b""
        self.offset = 0
        self._open(at_end=not from_start)

    def _open(self, *, at_end: bool) -> None:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - held across polls, closed in close()
        except OSError:
            self._fh, self._ino = None, None
            return
        st = os.fstat(fh.fileno())
        self._fh, self._ino = fh, st.st_ino
        self.offset = st.st_size if at_end else 0
        fh.seek(self.offset)
        self._partial = b""

    def poll(self) -> list[LogLine]:
        out = self._drain()
        try:
            st = os.stat(self.path)
        except OSError:
            return out  # between rotation steps: the new file is not there yet
        if self._fh is None or st.st_ino != self._ino:
            # rotated (or created): the old file is fully drained above
            self.close()
            self._open(at_end=False)
            out += self._drain()
        elif st.st_size < self.offset:  # truncated in place
            assert self._fh is not None
            self._fh.seek(0)
            self.offset = 0
            self._partial = b""
            out += self._drain()
        return out

    def _drain(self) -> list[LogLine]:
        if self._fh is None:
            return []
        out: list[LogLine] = []
        while True:
            chunk = self._fh.read(BLOCK)
            if not chunk:
                break
            self.offset += len(chunk)
            data = self._partial + chunk
            *lines, self._partial = data.split(b"\n")
            self._partial = self._partial[-MAX_LINE:]
            for raw in lines:
                if raw.strip():
                    line = LogLine.parse(raw[:MAX_LINE].decode("utf-8", errors="replace"))
                    if line.at_least(self.min_level):
                        out.append(line)
        return out

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
