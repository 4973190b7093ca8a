"""Logging: tenant-bound events land in ``<logs>/<slug>.log`` as JSON lines, the writer keeps
a bounded number of files open, rotates by size, and never blocks the caller."""

from __future__ import annotations

import io
import json
import logging as stdlib_logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from wafleet.logging import (
    MAX_OPEN_FILES,
    TenantFileWriter,
    configure_logging,
    get_logger,
    shutdown_logging,
    tenant_log_path,
    tenant_writer,
)


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _json_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[TenantFileWriter]:
    w = TenantFileWriter(tmp_path / "logs")
    w.start()
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[tuple[Path, io.StringIO]]:
    """configure_logging into a buffer; global structlog/stdlib state restored after."""
    out = io.StringIO()
    root = stdlib_logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    configure_logging(level="INFO", fmt="json", logs_dir=tmp_path / "logs", stream=out)
    try:
        yield tmp_path / "logs", out
    finally:
        shutdown_logging()
        structlog.reset_defaults()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_tenant_events_go_to_the_tenant_file(configured: tuple[Path, io.StringIO]) -> None:
    logs, out = configured
    log = get_logger("test", tenant="acme")
    log.info("connected", phone="+15550001")
    log.debug("filtered out by level")
    get_logger("test").info("no tenant here")
    structlog.contextvars.bind_contextvars(tenant="beta")
    try:
        get_logger("test").warning("via contextvars")
    finally:
        structlog.contextvars.clear_contextvars()
    w = tenant_writer()
    assert w is not None
    assert w.flush()

    acme = _json_lines(logs / "acme.log")
    assert len(acme) == 1
    assert acme[0]["event"] == "connected"
    assert acme[0]["tenant"] == "acme"
    assert acme[0]["phone"] == "+15550001"
    assert acme[0]["level"] == "info"
    assert str(acme[0]["timestamp"]).endswith("Z")
    assert _json_lines(logs / "beta.log")[0]["event"] == "via contextvars"
    assert sorted(p.name for p in logs.iterdir()) == ["acme.log", "beta.log"]

    stdout_events = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert stdout_events == ["connected", "no tenant here", "via contextvars"]


def test_slug_cannot_escape_the_logs_dir(tmp_path: Path) -> None:
    for slug in ("../evil", "/etc/passwd", "a/b", ""):
        path = tenant_log_path(tmp_path, slug)
        assert path.parent == tmp_path
        assert path.name.endswith(".log")


def test_thousand_tenants_keep_open_files_bounded(writer: TenantFileWriter) -> None:
    before = _fd_count()
    for i in range(1000):
        writer.write(f"t{i}", json.dumps({"event": "hello", "tenant": f"t{i}", "i": i}))
        if i % 100 == 99:  # several batches, so the LRU is exercised while writing
            assert writer.flush()
            assert writer.open_files <= MAX_OPEN_FILES
            assert _fd_count() - before <= MAX_OPEN_FILES
    assert writer.flush()
    assert writer.open_files == MAX_OPEN_FILES
    assert _fd_count() - before <= MAX_OPEN_FILES
    files = list(writer.logs_dir.glob("*.log"))
    assert len(files) == 1000
    assert _json_lines(writer.logs_dir / "t999.log") == [
        {"event": "hello", "tenant": "t999", "i": 999}
    ]
    # a tenant whose handle was evicted gets its file reopened in append mode
    writer.write("t0", json.dumps({"event": "again"}))
    assert writer.flush()
    assert [e["event"] for e in _json_lines(writer.logs_dir / "t0.log")] == ["hello", "again"]
    writer.stop()
    assert writer.open_files == 0
    assert _fd_count() <= before


def test_rotation_by_size(tmp_path: Path) -> None:
    w = TenantFileWriter(tmp_path, max_bytes=500, backups=2)
    w.start()
    try:
        for i in range(100):
            w.write("acme", json.dumps({"event": "line", "i": i, "pad": "x" * 30}))
        assert w.flush()
    finally:
        w.stop()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["acme.log", "acme.log.1", "acme.log.2"]
    kept: list[int] = []
    for name in ("acme.log.2", "acme.log.1", "acme.log"):
        path = tmp_path / name
        if name != "acme.log":
            assert path.stat().st_size >= 500  # rotated once it reached max_bytes
        assert path.stat().st_size < 500 + 100  # ... and not much later
        kept += [int(e["i"]) for e in _json_lines(path)]  # type: ignore[call-overload]
    # the newest lines survive, in order, without gaps; the oldest were rotated away
    assert kept == list(range(kept[0], 100))
    assert kept[0] > 0


def test_write_never_blocks_when_the_queue_is_full(tmp_path: Path) -> None:
    w = TenantFileWriter(tmp_path, queue_max=10)
    release = threading.Event()
    busy = threading.Event()
    original = w._write_batch

    def stuck_batch(batch: list[object]) -> None:
        busy.set()
        release.wait(30)  # a disk that does not answer
        original(batch)  # type: ignore[arg-type]

    w._write_batch = stuck_batch  # type: ignore[method-assign]
    w.start()
    try:
        w.write("acme", '{"event": "first"}')
        assert busy.wait(10)  # the writer thread now holds "first" and is stuck
        for i in range(25):  # 10 fit in the queue, 15 are dropped; none of these waits
            w.write("acme", json.dumps({"event": "more", "i": i}))
        assert w.dropped == 15
    finally:
        release.set()
    assert w.flush()
    w.stop()
    lines = _json_lines(tmp_path / "acme.log")
    assert len(lines) == 11
    assert lines[0]["event"] == "first"


async def test_logging_from_the_event_loop_with_a_stalled_writer(
    configured: tuple[Path, io.StringIO],
) -> None:
    w = tenant_writer()
    assert w is not None
    release = threading.Event()
    original = w._write_batch

    def stuck_batch(batch: list[object]) -> None:
        release.wait(30)
        original(batch)  # type: ignore[arg-type]

    w._write_batch = stuck_batch  # type: ignore[method-assign]
    try:
        log = get_logger("loop", tenant="acme")
        for i in range(200):
            log.info("tick", i=i)  # returns at once although nothing reaches the disk
        _, out = configured
        assert out.getvalue().count('"tick"') == 200
    finally:
        release.set()
    assert w.flush()
    assert len(_json_lines(configured[0] / "acme.log")) == 200
