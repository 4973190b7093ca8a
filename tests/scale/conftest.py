"""Multi-worker fixtures: a throwaway PostgreSQL database, a real `wafleet simulator`,
N real `wafleet worker` processes and many linked tenants."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.procs import Proc, base_env, free_port, wait_http_ok, wait_until
from wafleet.bench.fleet import query_once
from wafleet.db.engine import Database
from wafleet.db.repositories import TenantRepository, UserRepository

LEASE_TTL = 3.0
SIM_IDLE_TIMEOUT = 1.5  # the simulator drops a silent client before its lease can expire
WORKER_ENV = {
    "WAFLEET_ENGINE": "simulator",
    "WAFLEET_HEARTBEAT_INTERVAL": "0.5",
    "WAFLEET_STALE_AFTER": "2",
    "WAFLEET_LEASE_TTL": str(LEASE_TTL),
    "WAFLEET_KEEPALIVE_INTERVAL": "0.4",
    "WAFLEET_KEEPALIVE_TIMEOUT": "0.6",
    "WAFLEET_RECONNECT_INITIAL_DELAY": "0.2",
    "WAFLEET_RECONNECT_MAX_DELAY": "1",
    "WAFLEET_RECONNECT_JITTER": "0",
    "WAFLEET_LOG_LEVEL": "INFO",
}
RULES = {"rules": [{"match": "any", "reply": "echo: {text}"}]}


def phone_of(i: int) -> str:
    return f"+1555100{i:04d}"


@dataclass
class Fleet:
    root: Path
    db_url: str
    sim_port: int
    workers: list[Proc] = field(default_factory=list)
    procs: list[Proc] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return base_env(
            self.root / "data",
            WAFLEET_DATABASE_URL=self.db_url,
            WAFLEET_SIMULATOR_URL=f"ws://127.0.0.1:{self.sim_port}/ws",
            **WORKER_ENV,
        )

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def start_worker(self) -> Proc:
        n = len(self.workers) + 1
        proc = Proc(["worker"], self.env, self.root / f"worker-{n}.log")
        self.workers.append(proc)
        self.procs.append(proc)
        return proc

    def sim(self, method: str, path: str, body: Any = None) -> Any:
        r = httpx.request(method, f"{self.sim_url}{path}", json=body, timeout=30)
        assert r.status_code == 200, (method, path, r.status_code, r.text)
        return r.json()

    def stats(self) -> dict[str, Any]:
        return dict(self.sim("GET", "/sim/stats"))

    def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        return asyncio.run(query_once(self.db_url, sql, **params))

    def sessions(self) -> list[dict[str, Any]]:
        return self.query(
            "SELECT t.slug, s.state, s.phone, s.last_qr, l.worker_id AS lease_worker, l.epoch "
            "FROM tenants t JOIN whatsapp_sessions s ON s.tenant_id = t.id "
            "JOIN tenant_leases l ON l.tenant_id = t.id ORDER BY t.id"
        )

    def worker_ids(self) -> dict[int, str]:
        """pid → worker id, for the workers registered so far."""
        rows = self.query("SELECT id, pid FROM worker_processes")
        return {int(r["pid"]): str(r["id"]) for r in rows}

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.output()[-3000:]}" for p in self.procs)

    def wait_all_connected(
        self, *, timeout: float, exclude_worker: str | None = None
    ) -> list[dict[str, Any]]:
        def check() -> list[dict[str, Any]] | None:
            rows = self.sessions()
            ok = all(
                r["state"] == "CONNECTED"
                and r["lease_worker"] is not None
                and r["lease_worker"] != exclude_worker
                for r in rows
            )
            return rows if ok else None

        try:
            return wait_until(check, timeout=timeout, interval=0.2, what="all tenants CONNECTED")
        except AssertionError as err:
            states: dict[str, int] = {}
            for r in self.sessions():
                states[r["state"]] = states.get(r["state"], 0) + 1
            raise AssertionError(f"{err}: {states}\n{self.logs()}") from None

    def max_concurrent(self) -> int:
        mc = self.stats()["max_concurrent"]
        return max(mc.values()) if mc else 0


def _seed(db_url: str, n: int) -> None:
    async def go() -> None:
        db = Database(db_url)
        try:
            async with db.session() as s, s.begin():
                user = await UserRepository(s).create("ops@example.com", "password123")
                repo = TenantRepository(s)
                for i in range(n):
                    t = await repo.create(f"t{i:03d}", f"Tenant {i}", user)
                    await repo.set_config(t, RULES)
        finally:
            await db.close()

    asyncio.run(go())


@pytest.fixture
def fleet_factory(pg_migrated_url: str, tmp_path: Path) -> Iterator[Any]:
    fleets: list[Fleet] = []

    def make(*, tenants: int, workers: int) -> Fleet:
        _seed(pg_migrated_url, tenants)
        fleet = Fleet(tmp_path, pg_migrated_url, free_port())
        sim = Proc(
            [
                "simulator",
                "--port",
                str(fleet.sim_port),
                "--time-scale",
                "0.2",
                "--idle-timeout",
                str(SIM_IDLE_TIMEOUT),
            ],
            fleet.env,
            tmp_path / "simulator.log",
        )
        fleet.procs.append(sim)
        fleets.append(fleet)
        wait_http_ok(f"{fleet.sim_url}/sim/stats")
        for _ in range(workers):
            fleet.start_worker()
        _link_all(fleet, tenants)
        return fleet

    yield make
    for f in fleets:
        for p in reversed(f.procs):
            p.signal(__import__("signal").SIGCONT)
            p.stop()


def _link_all(fleet: Fleet, n: int) -> None:
    """Scan every tenant's QR code at the simulator, each with its own phone number — and
    scan again whenever a tenant shows a new code (rotation), as a person would."""
    scanned: dict[str, str] = {}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        rows = fleet.sessions()
        if len(rows) == n and all(r["state"] == "CONNECTED" for r in rows):
            break
        for r in rows:
            qr = r["last_qr"]
            if r["state"] != "QR_READY" or not qr or scanned.get(r["slug"]) == qr:
                continue
            i = int(r["slug"][1:])
            resp = httpx.post(
                f"{fleet.sim_url}/sim/scan", json={"qr": qr, "phone": phone_of(i)}, timeout=10
            )
            if resp.status_code == 200:
                scanned[r["slug"]] = qr
        time.sleep(0.2)
    fleet.wait_all_connected(timeout=30)
