"""A real `wafleet control-plane` process: auth over real sockets, clean shutdown and
one-line start-up errors."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.control_plane.conftest import LiveControlPlane, headers
from tests.control_plane.seed import ADMIN, ALICE, BOB, KEY, SECRET_A, UNKNOWN
from tests.support.procs import WAFLEET, base_env, free_port, running, wait_http_ok

P = "/portal/tenant/current"


@pytest.mark.parametrize(
    ("path", "hdrs", "status"),
    [
        (f"{P}/status", headers(ALICE, key=None), 401),
        (f"{P}/status", headers(ALICE, key="z" * 40), 401),
        (f"{P}/status", headers(None), 401),
        (f"{P}/status", headers(UNKNOWN), 403),
        (f"{P}/status?tenant=a", headers(BOB), 403),
        (f"{P}/logs?tenant=a", headers(BOB), 403),
        (f"{P}/status", headers(ALICE), 200),
        (f"{P}/logs?tenant=a", headers(ADMIN), 200),
        ("/admin/workers", headers(ALICE), 403),
        ("/admin/workers", headers(ADMIN), 200),
        ("/healthz", {}, 200),
        ("/metrics", {}, 200),
    ],
)
def test_real_process_auth(live_cp: LiveControlPlane, path: str, hdrs: dict, status: int):
    resp = httpx.get(live_cp.url + path, headers=hdrs, timeout=10)
    assert resp.status_code == status, resp.text
    if status >= 400:
        assert set(resp.json()["error"]) == {"code", "message"}


def test_real_process_scoping(live_cp: LiveControlPlane):
    resp = httpx.get(f"{live_cp.url}{P}/logs", headers=headers(BOB), timeout=10)
    assert resp.status_code == 200
    assert resp.json()["items"]
    assert SECRET_A not in resp.text


def test_sigterm_stops_cleanly(tmp_path: Path, sqlite_template: Path):
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sqlite_template, data / "wafleet.db")
    port = free_port()
    with running(
        ["control-plane", "--port", str(port), "--no-migrate"],
        base_env(data, WAFLEET_PORTAL_KEY=KEY),
        tmp_path / "cp.log",
    ) as proc:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout=30)
        proc.signal(signal.SIGTERM)
        assert proc.popen.wait(15) == 0
        out = proc.output()
    assert "control plane stopped" in out
    assert "Traceback" not in out


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        WAFLEET + args, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_refuses_to_start_without_portal_key(tmp_path: Path):
    env = base_env(tmp_path / "data")
    del env["WAFLEET_PORTAL_KEY"]
    res = _run(["control-plane", "--port", str(free_port())], env)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "WAFLEET_PORTAL_KEY" in lines[0]


def test_refuses_a_short_portal_key(tmp_path: Path):
    env = base_env(tmp_path / "data", WAFLEET_PORTAL_KEY="short")
    res = _run(["control-plane"], env)
    assert res.returncode == 2
    assert (
        res.stderr.strip().splitlines()
        == ["error: WAFLEET_PORTAL_KEY: must be at least 32 characters"]
        or "WAFLEET_PORTAL_KEY" in res.stderr
    )


def test_busy_port_is_one_line(live_cp: LiveControlPlane, tmp_path: Path):
    port = int(live_cp.url.rsplit(":", 1)[1])
    res = _run(["control-plane", "--port", str(port)], base_env(live_cp.data_dir))
    assert res.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_bad_port_is_usage_error(tmp_path: Path):
    res = _run(["control-plane", "--port", "99999"], base_env(tmp_path / "data"))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr


def test_no_import_side_effects():
    code = (
        "import wafleet.control_plane.app, wafleet.control_plane.server, "
        "wafleet.cli.cmd_control_plane, threading, asyncio; "
        "print(threading.active_count())"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "1"
