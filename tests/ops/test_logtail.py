"""Per-tenant log tail: files written by the real `TenantFileWriter` (rotation included),
read from the end with bounded scanning, followed across rotation; and ``wafleet logs``
as a real subprocess."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.procs import WAFLEET, base_env, running, wait_until
from wafleet.logging import TenantFileWriter, tenant_log_path
from wafleet.ops.logtail import Follower, LogLine, reverse_lines, tail, tenant_tail

LEVELS = ["debug", "info", "warning", "error"]


def record(i: int, level: str | None = None) -> str:
    lvl = level or LEVELS[i % 4]
    return json.dumps(
        {"event": f"event {i}", "level": lvl, "tenant": "acme", "timestamp": f"t{i}", "n": i}
    )


def write_with_writer(logs: Path, lines: list[str], *, max_bytes: int = 5 * 1024**2) -> None:
    writer = TenantFileWriter(logs, max_bytes=max_bytes, backups=3)
    writer.start()
    for line in lines:
        writer.write("acme", line)
    assert writer.flush()
    writer.stop()


def test_last_lines_and_level_filter(tmp_path: Path) -> None:
    write_with_writer(tmp_path, [record(i) for i in range(100)])
    last = tenant_tail(tmp_path, "acme", 5)
    assert [ln.record["n"] for ln in last if ln.record] == [95, 96, 97, 98, 99]
    warn = tenant_tail(tmp_path, "acme", 4, min_level="warning")
    assert [ln.record["n"] for ln in warn if ln.record] == [94, 95, 98, 99]
    assert all(ln.level in ("warning", "error") for ln in warn)
    errors = tenant_tail(tmp_path, "acme", 1000, min_level="error")
    assert len(errors) == 25
    assert "WARNING  event 98 n=98" in last[-2].text()


def test_continues_into_rotated_files(tmp_path: Path) -> None:
    # ~90 bytes a line, 2 KiB files: the 300 lines span the file and its rotated copies
    write_with_writer(tmp_path, [record(i) for i in range(300)], max_bytes=2048)
    path = tenant_log_path(tmp_path, "acme")
    assert path.with_name("acme.log.1").exists()
    assert path.with_name("acme.log.2").exists()
    got = tail(path, 40)
    assert [ln.record["n"] for ln in got if ln.record] == list(range(260, 300))
    errs = tail(path, 20, min_level="error")
    assert [ln.record["n"] for ln in errs if ln.record] == list(range(223, 300, 4))


def test_reads_only_the_end_of_a_big_file(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    with open(path, "w") as fh:
        for i in range(200_000):  # ~18 MB
            fh.write(record(i) + "\n")
    budget = [10**9]
    with open(path, "rb") as fh:
        it = reverse_lines(fh, os.path.getsize(path), budget, block=64 * 1024)
        firsts = [json.loads(next(it))["n"] for _ in range(10)]
    assert firsts == list(range(199_999, 199_989, -1))
    assert 10**9 - budget[0] <= 64 * 1024  # one block read, not 18 MB
    # the scan bound: asking for rare lines stops at max_scan instead of reading it all
    got = tail(path, 5, min_level="critical", max_scan=256 * 1024)
    assert got == []


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.text(alphabet='ab{}" é', min_size=1, max_size=30), max_size=40),
    block=st.integers(1, 50),
)
def test_reverse_lines_matches_a_naive_read(lines: list[str], block: int) -> None:
    data = "\n".join(lines).encode()
    budget = [10**9]
    got = list(reverse_lines(io.BytesIO(data), len(data), budget, block))  # type: ignore[arg-type]
    want = [ln for ln in data.decode().split("\n") if ln.strip()][::-1]
    assert got == want


def test_non_json_lines_are_kept_unless_filtering(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text(record(1, "error") + "\nplain text line\n")
    assert [ln.raw for ln in tail(path, 10)][-1] == "plain text line"
    assert LogLine.parse("plain text line").text() == "plain text line"
    assert next(ln.record for ln in tail(path, 10, min_level="info"))["n"] == 1  # type: ignore[index]
    assert len(tail(path, 10, min_level="info")) == 1


def test_follower_across_partial_lines_rotation_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "acme.log"
    path.write_text(record(0) + "\n")
    f = Follower(path)  # from the end: line 0 is history
    assert f.poll() == []
    with open(path, "a") as fh:
        fh.write(record(1) + "\n" + record(2)[:10])  # line 2 not complete yet
    assert [ln.record["n"] for ln in f.poll() if ln.record] == [1]
    with open(path, "a") as fh:
        fh.write(record(2)[10:] + "\n" + record(3) + "\n")
    os.replace(path, path.with_name("acme.log.1"))  # rotation, as the writer does it
    assert [ln.record["n"] for ln in f.poll() if ln.record] == [2, 3]
    path.write_text(record(4) + "\n")
    with open(path.with_name("acme.log.1"), "a") as fh:
        fh.write("late line in the old file is not expected\n")
    assert [ln.record["n"] for ln in f.poll() if ln.record] == [4]
    path.write_text("")  # truncated in place
    with open(path, "a") as fh:
        fh.write(record(5) + "\n")
    assert [ln.record["n"] for ln in f.poll() if ln.record] == [5]
    f.close()

    # level filter, and a file that does not exist yet
    later = Follower(tmp_path / "new.log", min_level="error")
    assert later.poll() == []
    (tmp_path / "new.log").write_text(record(8, "info") + "\n" + record(9, "error") + "\n")
    assert [ln.record["n"] for ln in later.poll() if ln.record] == [9]
    later.close()


# ------------------------------------------------------------------ the CLI
def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WAFLEET, "logs", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_cli_tail_and_errors(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_with_writer(data / "logs", [record(i) for i in range(20)])
    env = base_env(data)
    out = run(env, "acme", "-n", "3", "--level", "warning")
    assert out.returncode == 0, out.stderr
    assert [ln.split()[2:4] for ln in out.stdout.splitlines()] == [
        ["event", "15"],
        ["event", "18"],
        ["event", "19"],
    ]
    raw = run(env, "acme", "-n", "2", "--json")
    assert [json.loads(ln)["n"] for ln in raw.stdout.splitlines()] == [18, 19]
    for args, word in (
        (("nobody",), "no log file for tenant 'nobody'"),
        (("acme", "--level", "loud"), "--level"),
        (("acme", "-n", "-1"), "--lines"),
    ):
        bad = run(env, *args)
        assert bad.returncode == 2, (args, bad.stdout, bad.stderr)
        assert bad.stderr.count("\n") == 1
        assert word in bad.stderr


@pytest.mark.slow
def test_cli_follows_across_rotation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    logs = data / "logs"
    write_with_writer(logs, [record(i, "info") for i in range(3)])
    path = tenant_log_path(logs, "acme")
    args = ["logs", "acme", "-f", "-n", "1", "--interval", "0.05"]
    with running(args, base_env(data), tmp_path / "f.out") as proc:
        wait_until(lambda: "event 2" in proc.output(), what="the last line", timeout=30)
        with open(path, "a") as fh:
            fh.write(record(3, "info") + "\n")
        os.replace(path, path.with_name("acme.log.1"))
        path.write_text(record(4, "error") + "\n")
        wait_until(lambda: "event 4" in proc.output(), what="the line after rotation", timeout=30)
        out = proc.output()
    assert [ln.split()[3] for ln in out.splitlines() if "event" in ln] == ["2", "3", "4"]
