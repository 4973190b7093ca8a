"""End-to-end fixtures: a real ``wafleet simulator``, ``wafleet worker`` and (when a test
asks) ``wafleet control-plane``, each its own process, on a SQLite database in tmp_path.

The database is migrated and seeded (user, tenant, rules) with the real CLI once per
session into a template directory; each test gets a copy, so a test costs only its own
processes. State is read back read-only with sqlite3, through ``wafleet status --json``
or through the control plane's API.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.support.procs import WAFLEET, Proc, base_env, free_port, wait_http_ok, wait_until

T = TypeVar("T")
SLUG = "acme"
OWNER = "owner@example.com"
PHONE = "+15550001"
PORTAL_KEY = "k" * 40  # the one base_env sets
TIME_SCALE = "0.05"
RULES = {"rules": [{"match": "any", "reply": "echo: {text}"}]}

# Small timings: a dead connection is seen within ~1 s, retries start at 0.2 s, cap 1 s.
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
    "WAFLEET_LOG_LEVEL": "INFO",
}


def run_cli(env: dict[str, str], *args: str, timeout: float = 60) -> str:
    proc = subprocess.run(
        WAFLEET + list(args), env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


@pytest.fixture(scope="session")
def seeded_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose database was migrated and seeded with the real CLI."""
    data = tmp_path_factory.mktemp("e2e-template") / "data"
    env = base_env(data)
    rules = data.parent / "rules.json"
    rules.write_text(json.dumps(RULES))
    run_cli(env, "migrate")
    run_cli(env, "user", "create", OWNER, "--password", "correct-horse-battery")
    run_cli(env, "tenant", "create", SLUG, "--name", "Acme", "--owner", OWNER)
    run_cli(env, "tenant", "configure", SLUG, "--rules", str(rules))
    return data


@dataclass
class Stack:
    """One test's processes and the ways to look at them."""

    root: Path
    data: Path
    sim_port: int
    cp_port: int
    procs: list[Proc] = field(default_factory=list)
    worker: Proc | None = None
    n_workers: int = 0
    env_overrides: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ environment
    @property
    def env(self) -> dict[str, str]:
        return base_env(
            self.data,
            WAFLEET_SIMULATOR_URL=f"ws://127.0.0.1:{self.sim_port}/ws",
            WAFLEET_CONTROL_PLANE_URL=f"http://127.0.0.1:{self.cp_port}",
            **{**WORKER_ENV, **self.env_overrides},
        )

    @property
    def db_path(self) -> Path:
        return self.data / "wafleet.db"

    def cli(self, *args: str) -> str:
        return run_cli(self.env, *args)

    # ------------------------------------------------------------------ processes
    def start(self, name: str, args: list[str]) -> Proc:
        proc = Proc(args, self.env, self.root / f"{name}.log")
        self.procs.append(proc)
        return proc

    def start_simulator(self) -> Proc:
        proc = self.start(
            "simulator",
            ["simulator", "--port", str(self.sim_port), "--time-scale", TIME_SCALE],
        )
        wait_http_ok(f"{self.sim_url}/sim/stats")
        return proc

    def start_worker(self) -> Proc:
        self.n_workers += 1
        self.worker = self.start(f"worker-{self.n_workers}", ["worker"])
        return self.worker

    def start_control_plane(self) -> Proc:
        proc = self.start("control-plane", ["control-plane", "--port", str(self.cp_port)])
        wait_http_ok(f"{self.cp_url}/healthz")
        return proc

    def logs(self) -> str:
        out = []
        for p in self.procs:
            text = p.output()
            out.append(f"----- {p.log_path.name} (last 4000 chars)\n{text[-4000:]}")
        return "\n".join(out)

    # ------------------------------------------------------------------ simulator
    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def sim(self, method: str, path: str, body: Any = None) -> Any:
        r = httpx.request(method, f"{self.sim_url}{path}", json=body, timeout=30)
        assert r.status_code == 200, (method, path, r.status_code, r.text)
        return r.json()

    def fault(self, kind: str, duration_s: float | None = None) -> Any:
        body: dict[str, Any] = {"kind": kind, "phone": PHONE}
        if duration_s is not None:
            body["duration_s"] = duration_s
        return self.sim("POST", "/sim/faults", body)

    def clear_faults(self) -> None:
        self.sim("DELETE", "/sim/faults")

    def inbound(self, sender: str, text: str) -> str:
        return str(
            self.sim("POST", "/sim/inbound", {"phone": PHONE, "from": sender, "text": text})["id"]
        )

    def inbound_batch(self, msgs: list[tuple[str, str]]) -> list[str]:
        body = {"messages": [{"phone": PHONE, "from": f, "text": t} for f, t in msgs]}
        return [str(i) for i in self.sim("POST", "/sim/inbound/batch", body)["ids"]]

    def outbound(self) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.sim_url}/sim/outbound", params={"phone": PHONE}, timeout=30)
        assert r.status_code == 200, r.text
        return list(r.json())

    def stats(self) -> dict[str, Any]:
        return dict(self.sim("GET", "/sim/stats"))

    def wait_outbound(self, n: int, *, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Wait until the simulator recorded at least ``n`` bot messages; return them all."""

        def enough() -> list[dict[str, Any]] | None:
            out = self.outbound()
            return out if len(out) >= n else None

        try:
            return wait_until(enough, timeout=timeout, interval=0.2, what=f"{n} outbound")
        except AssertionError as err:
            got = len(self.outbound())
            raise AssertionError(
                f"{err} (got {got}); session: {self.session()}\n{self.logs()}"
            ) from None

    def connect_attempts(self) -> int:
        return int(self.stats()["connect_attempts"].get(PHONE, 0))

    # ------------------------------------------------------------------ database (read-only)
    def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()

    def session(self) -> dict[str, Any]:
        rows = self.query(
            "SELECT s.*, t.status AS tenant_status, t.error_message "
            "FROM whatsapp_sessions s JOIN tenants t ON t.id = s.tenant_id WHERE t.slug = ?",
            SLUG,
        )
        assert len(rows) == 1
        return rows[0]

    def messages(self, direction: str) -> list[dict[str, Any]]:
        return self.query(
            "SELECT m.* FROM message_logs m JOIN tenants t ON t.id = m.tenant_id "
            "WHERE t.slug = ? AND m.direction = ? ORDER BY m.id",
            SLUG,
            direction,
        )

    def events(self, after_id: int = 0) -> list[dict[str, Any]]:
        """The connection timeline, oldest first."""
        return self.query(
            "SELECT e.* FROM connection_events e JOIN tenants t ON t.id = e.tenant_id "
            "WHERE t.slug = ? AND e.id > ? ORDER BY e.id",
            SLUG,
            after_id,
        )

    def last_event_id(self) -> int:
        ev = self.events()
        return int(ev[-1]["id"]) if ev else 0

    def status_json(self) -> dict[str, Any]:
        return dict(json.loads(self.cli("status", SLUG, "--json")))

    def wait_state(self, state: str, *, timeout: float = 20.0, **expect: Any) -> dict[str, Any]:
        """Wait until the session row is in ``state`` and every ``column=value`` holds."""

        def check() -> dict[str, Any] | None:
            s = self.session()
            if s["state"] == state and all(s.get(k) == v for k, v in expect.items()):
                return s
            return None

        try:
            return wait_until(check, timeout=timeout, what=f"session {state} {expect}")
        except AssertionError as err:
            raise AssertionError(f"{err}; last row: {self.session()}\n{self.logs()}") from None

    # ------------------------------------------------------------------ control plane
    @property
    def cp_url(self) -> str:
        return f"http://127.0.0.1:{self.cp_port}"

    def cp(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        r = httpx.request(
            method,
            f"{self.cp_url}{path}",
            json=body,
            headers={"x-portal-key": PORTAL_KEY, "x-user-email": OWNER},
            timeout=30,
        )
        assert r.status_code == expect, (method, path, r.status_code, r.text)
        return r.json()

    # ------------------------------------------------------------------ linking
    def wait_qr(self, *, not_: str | None = None, timeout: float = 20.0) -> str:
        def qr() -> str | None:
            s = self.session()
            if s["state"] == "QR_READY" and s["last_qr"] and s["last_qr"] != not_:
                return str(s["last_qr"])
            return None

        try:
            return wait_until(qr, timeout=timeout, what="a QR code in the session row")
        except AssertionError as err:
            raise AssertionError(f"{err}; last row: {self.session()}\n{self.logs()}") from None

    def scan(self, qr: str) -> None:
        # A code may rotate between our read and the scan (time-scale): retry on 404.
        for _ in range(10):
            r = httpx.post(f"{self.sim_url}/sim/scan", json={"qr": qr, "phone": PHONE}, timeout=30)
            if r.status_code == 200:
                return
            assert r.status_code == 404, r.text
            qr = self.wait_qr(not_=qr)
        raise AssertionError("could not scan any QR code")

    def link(self) -> dict[str, Any]:
        """QR from the database → scan at the simulator → CONNECTED."""
        self.scan(self.wait_qr())
        return self.wait_state("CONNECTED", phone=PHONE)


@pytest.fixture
def stack(seeded_data_dir: Path, tmp_path: Path) -> Iterator[Stack]:
    data = tmp_path / "data"
    shutil.copytree(seeded_data_dir, data)
    st = Stack(root=tmp_path, data=data, sim_port=free_port(), cp_port=free_port())
    try:
        st.start_simulator()
        yield st
    finally:
        for p in reversed(st.procs):
            with contextlib.suppress(Exception):
                p.stop()


@pytest.fixture
def linked(stack: Stack) -> Stack:
    """A running worker whose tenant is CONNECTED to the simulator as PHONE."""
    stack.start_worker()
    stack.link()
    return stack


def eventually(
    pred: Callable[[], T | None], *, timeout: float = 30.0, what: str, stack: Stack | None = None
) -> T:
    try:
        return wait_until(pred, timeout=timeout, interval=0.1, what=what)
    except AssertionError as err:
        if stack is None:
            raise
        raise AssertionError(f"{err}\nsession: {stack.session()}\n{stack.logs()}") from None


def steady(pred: Callable[[], bool], seconds: float, interval: float = 0.2) -> None:
    """Assert ``pred()`` holds at every poll for ``seconds`` (a "nothing happens" check)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert pred()
        time.sleep(interval)
