"""`wafleet portal` as a real process: config errors are one line + exit 2; it serves,
and SIGTERM stops it cleanly."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.procs import WAFLEET, base_env, free_port, running, wait_http_ok

pytestmark = pytest.mark.slow


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WAFLEET, *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"WAFLEET_PORTAL_KEY": "short"}, "WAFLEET_PORTAL_KEY"),
        ({"WAFLEET_CONTROL_PLANE_URL": "ftp://x"}, "WAFLEET_CONTROL_PLANE_URL"),
        ({}, "wafleet migrate"),  # never migrated
    ],
)
def test_invalid_config_is_one_line_and_exit_2(
    tmp_path: Path, extra: dict[str, str], needle: str
) -> None:
    env = base_env(tmp_path / "data", **extra)
    res = run_cli(env, "portal", "--port", str(free_port()))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert needle in lines[0]
    assert "Traceback" not in res.stderr


def test_missing_portal_key_is_refused(tmp_path: Path) -> None:
    env = base_env(tmp_path / "data")
    del env["WAFLEET_PORTAL_KEY"]
    res = run_cli(env, "portal")
    assert res.returncode == 2
    assert res.stderr.startswith("error: WAFLEET_PORTAL_KEY")


def test_portal_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = base_env(tmp_path / "data", WAFLEET_CONTROL_PLANE_URL=f"http://127.0.0.1:{free_port()}")
    assert run_cli(env, "migrate").returncode == 0
    port = free_port()
    with running(["portal", "--port", str(port)], env, tmp_path / "portal.log") as proc:
        wait_http_ok(f"http://127.0.0.1:{port}/login", timeout=30)
        page = httpx.get(f"http://127.0.0.1:{port}/login")
        assert page.status_code == 200
        assert 'name="csrf_token"' in page.text
        # a second portal on the same port: one clear line, not a trace
        busy = run_cli(env, "portal", "--port", str(port))
        assert busy.returncode != 0
        assert "Traceback" not in busy.stderr
        assert f"127.0.0.1:{port}" in busy.stderr
        proc.signal(signal.SIGTERM)
        assert proc.popen.wait(15) == 0
