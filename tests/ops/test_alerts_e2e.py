"""Operator alerts end to end: a real ``wafleet simulator`` and ``wafleet worker`` (own
processes), the `AlertDispatcher` watching their SQLite database from this process (as
the control plane does), and a real HTTP receiver checking every signature.

Story: link → the phone logs the account out (one signed ``logged_out`` alert) → relink
with the CLI and scan (one ``recovered``) → the account flaps through three temporary
bans; with a budget of 4 alerts per 10 minutes per tenant only the first ban and its
recovery get through, the rest is counted as suppressed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.ops.receiver import Receiver, running_receiver
from tests.support.procs import Proc, base_env, free_port
from wafleet.db.engine import Database
from wafleet.ops.alert_delivery import AlertSender, RateLimiter
from wafleet.ops.alerts import AlertDispatcher

pytestmark = pytest.mark.slow

KEY = "k" * 40  # base_env's portal key: the alerts are signed with it
SLUG = "acme"
PHONE = "+15550001"
DEADLINE = 30.0
T = TypeVar("T")

WORKER_ENV = {
    "WAFLEET_ENGINE": "simulator",
    "WAFLEET_HEARTBEAT_INTERVAL": "0.5",
    "WAFLEET_STALE_AFTER": "3",
    "WAFLEET_LEASE_TTL": "3",
    "WAFLEET_KEEPALIVE_INTERVAL": "0.5",
    "WAFLEET_KEEPALIVE_TIMEOUT": "0.5",
    "WAFLEET_RECONNECT_INITIAL_DELAY": "0.2",
    "WAFLEET_RECONNECT_MAX_DELAY": "1",
    "WAFLEET_RECONNECT_JITTER": "0",
}


async def cli(env: dict[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wafleet",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, (args, out, err)
    return out.decode()


async def eventually(pred: Callable[[], T | None], what: str, logs: Callable[[], str]) -> T:
    """Poll without blocking the loop the dispatcher runs in."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while True:
        value = pred()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{logs()}")
        await asyncio.sleep(0.05)


class World:
    def __init__(self, root: Path, receiver: Receiver) -> None:
        self.root = root
        self.data = root / "data"
        self.sim_port = free_port()
        self.env = base_env(
            self.data, WAFLEET_SIMULATOR_URL=f"ws://127.0.0.1:{self.sim_port}/ws", **WORKER_ENV
        )
        self.receiver = receiver
        self.procs: list[Proc] = []
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.sim_port}", timeout=10)

    def start(self, name: str, args: list[str]) -> Proc:
        proc = Proc(args, self.env, self.root / f"{name}.log")
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        tails = [f"--- {p.log_path.name}\n{p.output()[-3000:]}" for p in self.procs]
        return "\n".join([*tails, f"alerts: {self.receiver.alerts}", f"session: {self.row()}"])

    def row(self) -> dict[str, Any]:
        conn = sqlite3.connect(f"file:{self.data / 'wafleet.db'}?mode=ro", uri=True, timeout=10)
        try:
            conn.row_factory = sqlite3.Row
            r = conn.execute(
                "SELECT s.*, t.status AS tenant_status FROM whatsapp_sessions s "
                "JOIN tenants t ON t.id = s.tenant_id WHERE t.slug = ?",
                (SLUG,),
            ).fetchone()
            return dict(r) if r else {}
        finally:
            conn.close()

    async def wait_state(self, state: str, **expect: Any) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            r = self.row()
            ok = r.get("state") == state and all(r.get(k) == v for k, v in expect.items())
            return r if ok else None

        return await eventually(check, f"session {state} {expect}", self.logs)

    async def link(self) -> None:
        for _ in range(10):  # a code may rotate between the read and the scan
            row = await self.wait_state("QR_READY")
            r = await self.http.post("/sim/scan", json={"qr": row["last_qr"], "phone": PHONE})
            if r.status_code == 200:
                await self.wait_state("CONNECTED", phone=PHONE)
                return
            assert r.status_code == 404, r.text
            await asyncio.sleep(0.1)
        raise AssertionError("could not scan a QR code")

    async def fault(self, kind: str, duration_s: float | None = None) -> None:
        body: dict[str, Any] = {"kind": kind, "phone": PHONE}
        if duration_s is not None:
            body["duration_s"] = duration_s
        r = await self.http.post("/sim/faults", json=body)
        assert r.status_code == 200, r.text

    async def alerts(self, n: int) -> list[dict[str, Any]]:
        return await eventually(
            lambda: list(self.receiver.alerts) if len(self.receiver.alerts) >= n else None,
            f"{n} alert(s)",
            self.logs,
        )


async def test_logout_recovery_and_flapping_bans(tmp_path: Path) -> None:
    with running_receiver(KEY) as receiver:
        w = World(tmp_path, receiver)
        await cli(w.env, "migrate")
        await cli(w.env, "user", "create", "o@example.com", "--password", "correct-horse")
        await cli(w.env, "tenant", "create", SLUG, "--name", "Acme", "--owner", "o@example.com")
        db = Database(f"sqlite:///{w.data / 'wafleet.db'}")
        dispatcher = AlertDispatcher(
            db,
            AlertSender(receiver.url, KEY, initial_delay=0.1),
            poll_interval=0.1,
            limiter=RateLimiter(4, 600),
        )
        try:
            w.start("simulator", ["simulator", "--port", str(w.sim_port), "--time-scale", "0.05"])
            await eventually(
                lambda: _answers(f"http://127.0.0.1:{w.sim_port}/sim/stats"), "simulator", w.logs
            )
            w.start("worker", ["worker"])
            await dispatcher.start()
            await w.link()
            assert receiver.alerts == []  # linking is not an alert

            # 1. logged out from the phone: one signed alert
            await w.fault("logout")
            await w.wait_state("LOGGED_OUT")
            [logout] = await w.alerts(1)
            assert logout["kind"] == "logged_out"
            assert logout["tenant"] == SLUG
            assert "Logged out from the phone" in logout["detail"]
            assert f"wafleet tenant relink {SLUG}" in logout["next_step"]
            assert logout["worker"]

            # 2. relinked by the operator: one recovery
            await cli(w.env, "tenant", "relink", SLUG)
            await w.link()
            recovered = (await w.alerts(2))[1]
            assert recovered["kind"] == "recovered"
            assert recovered["recovered_from"] == ["logged_out"]

            # 3. flapping: three temporary bans (20 s x time-scale 0.05 = 1 s each), each
            #    waited out and reconnected by the worker by itself
            for _ in range(3):
                await w.fault("temp_ban", duration_s=20)
                await w.wait_state("DISCONNECTED", last_disconnect_cause="temp_banned")
                await w.wait_state("CONNECTED")
            await eventually(
                lambda: dispatcher.stats.suppressed >= 4, "4 suppressed alerts", w.logs
            )
            await asyncio.sleep(0.5)  # anything else in flight would show up by now
            assert receiver.kinds() == ["logged_out", "recovered", "temp_banned", "recovered"]
            assert receiver.alerts[2]["until"]
            assert dispatcher.stats.suppressed == 4  # ban 2, its recovery, ban 3, its recovery
            assert receiver.bad_signatures == 0
            assert dispatcher.stats.failed == 0
        finally:
            await dispatcher.stop()
            await db.close()
            await w.http.aclose()
            for p in reversed(w.procs):
                p.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
