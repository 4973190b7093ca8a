"""Real processes: `wafleet simulator`, `wafleet control-plane` and `wafleet worker` with
a tiny heartbeat (0.5 s) and stale_after (1.5 s). The worker is frozen with SIGSTOP: the
control plane must show it STALE (and its tenant disconnected with cause worker_stale);
after SIGCONT the worker's next heartbeat shows it RUNNING again."""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.control_plane.conftest import headers
from tests.control_plane.seed import ADMIN, ALICE, KEY, seed_fleet
from tests.support.procs import base_env, free_port, running, wait_http_ok, wait_until
from wafleet.db.engine import Database

HEARTBEAT = 0.5
STALE_AFTER = 1.5
# Scheduling slack on a loaded CI machine; the measured figure is printed.
SLACK = 4.0

pytestmark = pytest.mark.slow


def _workers(url: str) -> list[dict]:
    resp = httpx.get(f"{url}/admin/workers", headers=headers(ADMIN), timeout=5)
    resp.raise_for_status()
    items: list[dict] = resp.json()["items"]
    return items


def test_sigstopped_worker_goes_stale_and_comes_back(tmp_path: Path, sqlite_template: Path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sqlite_template, data / "wafleet.db")

    async def _seed() -> None:
        async with Database(f"sqlite:///{data / 'wafleet.db'}") as db:
            await seed_fleet(db, datetime.now(UTC))

    asyncio.run(_seed())
    sim_port, cp_port = free_port(), free_port()
    env = base_env(
        data,
        WAFLEET_PORTAL_KEY=KEY,
        WAFLEET_ENGINE="simulator",
        WAFLEET_SIMULATOR_URL=f"ws://127.0.0.1:{sim_port}/ws",
        WAFLEET_HEARTBEAT_INTERVAL=str(HEARTBEAT),
        WAFLEET_STALE_AFTER=str(STALE_AFTER),
        WAFLEET_LEASE_TTL="1.0",
    )
    cp_url = f"http://127.0.0.1:{cp_port}"
    with (
        running(
            ["simulator", "--port", str(sim_port), "--time-scale", "0.5"],
            env,
            tmp_path / "sim.log",
        ),
        running(["control-plane", "--port", str(cp_port)], env, tmp_path / "cp.log") as cp,
    ):
        wait_http_ok(f"{cp_url}/healthz", timeout=30)
        wait_http_ok(f"http://127.0.0.1:{sim_port}/sim/stats", timeout=30)
        with running(["worker"], env, tmp_path / "worker.log") as worker:

            def running_worker() -> dict | None:
                assert worker.alive(), worker.output()
                items = [w for w in _workers(cp_url) if w["pid"] == worker.pid]
                return items[0] if items and items[0]["status"] == "RUNNING" else None

            me = wait_until(running_worker, timeout=30, what="the worker to register")

            def holds_tenant() -> bool:
                status = httpx.get(
                    f"{cp_url}/portal/tenant/current/status", headers=headers(ALICE), timeout=5
                ).json()
                return bool(status["worker"] and status["worker"]["id"] == me["id"])

            wait_until(holds_tenant, timeout=30, what="the worker to hold tenant a")

            worker.signal(signal.SIGSTOP)
            frozen_at = time.monotonic()
            try:

                def stale() -> bool:
                    return any(
                        w["id"] == me["id"] and w["status"] == "STALE" for w in _workers(cp_url)
                    )

                wait_until(
                    stale,
                    timeout=STALE_AFTER + HEARTBEAT + SLACK,
                    interval=0.05,
                    what="the frozen worker to show STALE",
                )
                took = time.monotonic() - frozen_at
                print(f"STALE {took:.2f}s after SIGSTOP (stale_after {STALE_AFTER}s)")
                status = httpx.get(
                    f"{cp_url}/portal/tenant/current/status", headers=headers(ALICE), timeout=5
                ).json()
                assert status["last_disconnect"]["cause"] == "worker_stale"
                assert status["last_disconnect"]["action"] == "retrying"
                metrics = httpx.get(f"{cp_url}/metrics", timeout=5).text
                assert 'wafleet_workers{status="STALE"} 1.0' in metrics
            finally:
                worker.signal(signal.SIGCONT)

            def running_again() -> bool:
                return any(
                    w["id"] == me["id"] and w["status"] == "RUNNING" for w in _workers(cp_url)
                )

            wait_until(running_again, timeout=20, what="the worker to be RUNNING after SIGCONT")
        assert "Traceback" not in cp.output()
