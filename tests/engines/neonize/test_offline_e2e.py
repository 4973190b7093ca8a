"""The whole platform with the default engine on a machine without a route to WhatsApp:
``wafleet up`` → the tenant's session is DISCONNECTED with cause ``network``, the bot keeps
retrying with growing delays (each attempt a fresh neonize child), and SIGTERM stops
everything — engine children included — within 10 s."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.procs import WAFLEET, base_env, free_port, running, wait_http_ok, wait_until

pytestmark = pytest.mark.slow

SLUG = "acme"


def cli(env: dict[str, str], *args: str) -> None:
    proc = subprocess.run(WAFLEET + list(args), env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)


def session_row(db: Path) -> dict[str, Any] | None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        row = conn.execute(
            "SELECT s.* FROM whatsapp_sessions s JOIN tenants t ON t.id = s.tenant_id "
            "WHERE t.slug = ?",
            (SLUG,),
        ).fetchone()
        return dict(row) if row else None
    finally:
        conn.close()


def engine_children_of(pid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "wafleet.engines.neonize.child" in cmd and f"--parent-pid {pid}" in cmd:
            out.append(p)
    return out


def parse(ts: str | None) -> datetime | None:
    return datetime.fromisoformat(ts) if ts else None


def test_up_with_the_default_engine_offline(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = base_env(
        data,
        WAFLEET_RECONNECT_INITIAL_DELAY="0.2",
        WAFLEET_RECONNECT_MAX_DELAY="2",
        WAFLEET_RECONNECT_MULTIPLIER="2",
        WAFLEET_RECONNECT_JITTER="0",
        WAFLEET_RECONNECT_MAX_ATTEMPTS="100",
        WAFLEET_HEARTBEAT_INTERVAL="0.5",
    )
    env.pop("WAFLEET_ENGINE", None)  # the default: neonize
    cli(env, "migrate")
    cli(env, "user", "create", "owner@example.com", "--password", "correct-horse-battery")
    cli(env, "tenant", "create", SLUG, "--name", "Acme", "--owner", "owner@example.com")
    db = data / "wafleet.db"
    port, cp_port = free_port(), free_port()
    args = ["up", "--port", str(port), "--control-plane-port", str(cp_port)]
    with running(args, env, tmp_path / "up.log") as up:
        wait_http_ok(f"http://127.0.0.1:{cp_port}/healthz", timeout=60)
        # Planned delay of each retry, read from the session row as the bot writes it.
        planned: dict[int, float] = {}
        seen_children: set[int] = set()

        def enough_attempts() -> bool:
            seen_children.update(p.pid for p in engine_children_of(up.pid))
            row = session_row(db)
            if row and row["last_disconnect_cause"] == "network" and row["next_retry_at"]:
                at, nxt = parse(row["last_disconnect_at"]), parse(row["next_retry_at"])
                if at and nxt:
                    planned.setdefault(int(row["reconnect_attempt"]), (nxt - at).total_seconds())
            return len(planned) >= 4

        try:
            wait_until(enough_attempts, timeout=90, interval=0.05, what="4 network retries")
        except AssertionError as err:
            raise AssertionError(f"{err}; row={session_row(db)}\n{up.output()[-4000:]}") from None
        row = session_row(db)
        assert row is not None
        assert row["state"] in {"DISCONNECTED", "CONNECTING"}
        assert row["last_disconnect_cause"] == "network"
        assert row["last_disconnect_action"] == "retrying"
        assert "dial" in (row["last_disconnect_detail"] or "")
        delays = [planned[k] for k in sorted(planned)]
        assert delays == sorted(delays), planned  # backoff grows ...
        assert delays[-1] > delays[0], planned  # ... strictly over the run
        print(f"planned retry delays by attempt: {planned}")
        assert len(seen_children) >= 2  # every attempt ran in its own engine child

        started = time.monotonic()
        up.signal(signal.SIGTERM)
        up.popen.wait(15)
        assert time.monotonic() - started < 10, up.output()[-3000:]
        assert up.popen.returncode == 0, up.output()[-3000:]
        assert engine_children_of(up.pid) == []
        assert "Traceback" not in up.output()
