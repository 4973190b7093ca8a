"""Must-show 5: ``wafleet up --simulator`` end to end — one process, a tenant created with
the CLI against the same data dir, a scan, one message answered, then SIGTERM: exit 0
within 10 s and the worker row STOPPED."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import OWNER, PHONE, RULES, SLUG, WORKER_ENV, Stack, run_cli
from tests.support.procs import Proc, base_env, free_port, wait_http_ok

pytestmark = pytest.mark.slow


def test_up_with_simulator_links_answers_and_stops_cleanly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    portal, cp, sim = free_port(), free_port(), free_port()
    env = base_env(data, **{k: v for k, v in WORKER_ENV.items() if k != "WAFLEET_ENGINE"})
    proc = Proc(
        [
            "up",
            "--simulator",
            "--port",
            str(portal),
            "--control-plane-port",
            str(cp),
            "--simulator-port",
            str(sim),
            "--simulator-time-scale",
            "0.05",
        ],
        env,
        tmp_path / "up.log",
    )
    # Reads go through the same helpers as the multi-process tests.
    view = Stack(root=tmp_path, data=data, sim_port=sim, cp_port=cp, procs=[proc])
    try:
        wait_http_ok(f"http://127.0.0.1:{cp}/healthz", timeout=30)
        wait_http_ok(f"http://127.0.0.1:{portal}/login", timeout=30)
        wait_http_ok(f"http://127.0.0.1:{sim}/sim/stats", timeout=30)
        assert (data / "initial-admin.txt").exists()

        rules = tmp_path / "rules.json"
        rules.write_text(json.dumps(RULES))
        run_cli(env, "user", "create", OWNER, "--password", "correct-horse-battery")
        run_cli(env, "tenant", "create", SLUG, "--name", "Acme", "--owner", OWNER)
        run_cli(env, "tenant", "configure", SLUG, "--rules", str(rules))

        view.link()
        view.inbound("+15559999", "hello up")
        out = view.wait_outbound(1, timeout=30)
        assert [(m["to"], m["text"]) for m in out] == [("+15559999", "echo: hello up")]
        status = view.cp("GET", "/portal/tenant/current/status")
        assert status["session"]["state"] == "CONNECTED"
        assert status["session"]["phone"] == PHONE

        proc.signal(signal.SIGTERM)
        try:
            code = proc.popen.wait(10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"wafleet up did not exit within 10 s of SIGTERM\n{view.logs()}")
        assert code == 0, view.logs()
        workers = view.query("SELECT status, stopped_at FROM worker_processes")
        assert len(workers) == 1
        assert workers[0]["status"] == "STOPPED" and workers[0]["stopped_at"] is not None
        s = view.session()
        assert s["state"] == "DISCONNECTED"
        assert s["last_disconnect_cause"] == "shutdown"
        # and nothing listens anymore
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{cp}/healthz", timeout=2)
    finally:
        proc.stop()
