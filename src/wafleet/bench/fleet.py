"""A benchmark fleet: a real `wafleet simulator` process, a migrated database with N
tenants whose simulator credentials are pre-seeded, and real `wafleet worker` processes.

Pre-seeding (instead of linking 1,000 tenants by QR through the worker): the bench pairs
each phone at the simulator itself — a `SimulatorEngine` per phone connects without
credentials, gets a QR code, the bench scans it (``POST /sim/scan``) and the engine
receives ``pair_success`` with the device token, exactly as the worker's engine would —
then writes those credentials where the worker's `CredentialStore` reads them
(``<data dir>/sessions/<slug>/credentials.bin`` on SQLite, the ``session_credentials``
table on PostgreSQL) and the tenants' rows (tenant, member, session with its phone, lease)
with one bulk insert each. The worker then logs in with them like after a restart. The
simulator keeps devices in memory, so pairing is done against the same simulator run.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
from sqlalchemy import Table, func, select, update

from wafleet.bench.common import BenchError
from wafleet.bench.procs import Proc, Procs, clean_env, free_port, wait_for, wait_http
from wafleet.engines.base import EngineContext, EngineEvent, PairSuccess, QrCode
from wafleet.engines.credentials import FileCredentialStore, MemoryCredentialStore
from wafleet.engines.simulator import SimulatorEngine

ECHO_RULES: dict[str, Any] = {"rules": [{"match": "any", "reply": "You said: {text}"}]}
PAIR_CONCURRENCY = 100


def phone_of(index: int, prefix: str = "1555") -> str:
    return f"+{prefix}{index:07d}"


def slug_of(index: int) -> str:
    return f"b{index:05d}"


@dataclass
class Paired:
    phone: str
    creds: bytes  # what SimulatorEngine stores: {"token","phone","jid"}

    @property
    def jid(self) -> str:
        return str(json.loads(self.creds)["jid"])


async def pair_phones(
    sim_http: str, sim_ws: str, phones: list[str], *, concurrency: int = PAIR_CONCURRENCY
) -> list[Paired]:
    """Link one simulator device per phone, the way a phone scanning a QR code does."""
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=sim_http, timeout=30, limits=limits, trust_env=False
    ) as http:

        async def one(phone: str) -> Paired:
            async with sem:
                return await _pair_one(http, sim_ws, phone)

        return list(await asyncio.gather(*(one(p) for p in phones)))


async def _pair_one(http: httpx.AsyncClient, ws_url: str, phone: str) -> Paired:
    loop = asyncio.get_running_loop()
    qr: asyncio.Future[str] = loop.create_future()
    paired = asyncio.Event()
    store = MemoryCredentialStore()

    async def sink(ev: EngineEvent) -> None:
        if isinstance(ev, QrCode) and not qr.done():
            qr.set_result(ev.code)
        elif isinstance(ev, PairSuccess):
            paired.set()  # the engine saved the credentials before emitting this

    ctx = EngineContext(f"pair-{phone}", Path("/nonexistent"), store, sink)
    engine = SimulatorEngine(
        ctx, url=ws_url, keepalive_interval=60, keepalive_timeout=30, connect_timeout=30
    )
    try:
        await engine.connect()
        code = await asyncio.wait_for(qr, 30)
        resp = await http.post("/sim/scan", json={"qr": code, "phone": phone})
        if resp.status_code != 200:
            raise BenchError(f"pairing {phone}: /sim/scan answered {resp.status_code} {resp.text}")
        await asyncio.wait_for(paired.wait(), 30)
    finally:
        await engine.close()
    if store.data is None:
        raise BenchError(f"pairing {phone}: no credentials were issued")
    return Paired(phone, store.data)


@dataclass
class Fleet:
    """The processes and the database of one scenario run (``async with``)."""

    root: Path
    db_url: str = ""
    worker_env: dict[str, str] = field(default_factory=dict)
    procs: Procs = field(default_factory=Procs)
    sim_port: int = 0
    sim: Proc | None = None
    workers: list[Proc] = field(default_factory=list)
    tenant_ids: list[int] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.db_url:
            self.db_url = f"sqlite:///{self.data_dir / 'wafleet.db'}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def sim_http(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def sim_ws(self) -> str:
        return f"ws://127.0.0.1:{self.sim_port}/ws"

    @property
    def is_postgres(self) -> bool:
        return self.db_url.startswith("postgres")

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(
            self.data_dir,
            WAFLEET_DATABASE_URL=self.db_url,
            WAFLEET_ENGINE="simulator",
            WAFLEET_SIMULATOR_URL=self.sim_ws,
            **{**self.worker_env, **extra},
        )

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.procs.stop_all)

    # ------------------------------------------------------------------ simulator
    async def start_simulator(self, *extra: str) -> None:
        self.sim_port = free_port()
        args = ["simulator", "--port", str(self.sim_port), *extra]
        self.sim = self.procs.add(Proc.wafleet(args, self.env(), self.root / "simulator.log"))
        await wait_http(f"{self.sim_http}/sim/stats", timeout=30, procs=self.procs)

    async def sim_stats(self, http: httpx.AsyncClient) -> dict[str, Any]:
        resp = await http.get(f"{self.sim_http}/sim/stats")
        resp.raise_for_status()
        return dict(resp.json())

    def http(self, *, timeout: float = 30.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=timeout, trust_env=False)

    # ------------------------------------------------------------------ database
    async def migrate(self) -> None:
        from wafleet.db import migrate

        # Alembic's env runs its own event loop: give it a thread of its own.
        await asyncio.to_thread(migrate.upgrade, self.db_url)

    async def seed(
        self,
        count: int,
        *,
        phone_prefix: str = "1555",
        paused: bool = False,
        rules: dict[str, Any] | None = None,
    ) -> list[Paired]:
        """Pair ``count`` phones at the simulator, then store the tenants and credentials."""
        phones = [phone_of(i, phone_prefix) for i in range(count)]
        paired = await pair_phones(self.sim_http, self.sim_ws, phones)
        await self._insert_tenants(paired, paused=paused, rules=rules or ECHO_RULES)
        self.phones = phones
        return paired

    async def _insert_tenants(
        self, paired: list[Paired], *, paused: bool, rules: dict[str, Any]
    ) -> None:
        from wafleet.db.engine import Database
        from wafleet.db.models import (
            SessionCredential,
            Tenant,
            TenantLease,
            TenantMember,
            User,
            WhatsAppSession,
        )
        from wafleet.security import hash_password

        now = datetime.now(UTC)
        status = "PAUSED" if paused else "ACTIVE"
        db = Database(self.db_url)
        try:
            async with db.engine.begin() as conn:
                users = cast(Table, User.__table__)
                res = await conn.execute(
                    users.insert().returning(users.c.id),
                    [
                        {
                            "email": "bench@bench.test",
                            "password_hash": hash_password("bench-password"),
                            "is_admin": True,
                            "created_at": now,
                        }
                    ],
                )
                user_id = int(res.scalar_one())
                base = int(
                    (await conn.execute(select(func.coalesce(func.max(Tenant.id), 0)))).scalar_one()
                )
                ids = [base + i + 1 for i in range(len(paired))]
                await conn.execute(
                    cast(Table, Tenant.__table__).insert(),
                    [
                        {
                            "id": tid,
                            "slug": slug_of(i),
                            "name": f"Bench tenant {i}",
                            "status": status,
                            "config": rules,
                            "config_version": 1,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for i, tid in enumerate(ids)
                    ],
                )
                await conn.execute(
                    cast(Table, TenantMember.__table__).insert(),
                    [
                        {"tenant_id": tid, "user_id": user_id, "role": "owner", "created_at": now}
                        for tid in ids
                    ],
                )
                await conn.execute(
                    cast(Table, WhatsAppSession.__table__).insert(),
                    [
                        {
                            "tenant_id": tid,
                            "state": "DISCONNECTED",
                            "phone": p.phone,
                            "jid": p.jid,
                            "reconnect_active": False,
                            "reconnect_attempt": 0,
                            "updated_at": now,
                        }
                        for tid, p in zip(ids, paired, strict=True)
                    ],
                )
                await conn.execute(
                    cast(Table, TenantLease.__table__).insert(),
                    [{"tenant_id": tid, "epoch": 0} for tid in ids],
                )
                if self.is_postgres:  # the worker's DbCredentialStore reads them here
                    await conn.execute(
                        cast(Table, SessionCredential.__table__).insert(),
                        [
                            {
                                "tenant_id": tid,
                                "engine": "simulator",
                                "data": p.creds,
                                "updated_at": now,
                            }
                            for tid, p in zip(ids, paired, strict=True)
                        ],
                    )
        finally:
            await db.close()
        if not self.is_postgres:
            sessions = self.data_dir / "sessions"
            stores = [FileCredentialStore(sessions / slug_of(i)) for i in range(len(paired))]
            await asyncio.gather(*(st.save(p.creds) for st, p in zip(stores, paired, strict=True)))
        self.tenant_ids = ids

    async def set_status(self, status: str) -> None:
        from wafleet.db.engine import Database
        from wafleet.db.models import Tenant

        db = Database(self.db_url)
        try:
            async with db.engine.begin() as conn:
                tn = cast(Table, Tenant.__table__)
                await conn.execute(update(tn).values(status=status))
        finally:
            await db.close()

    async def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        return await query_once(self.db_url, sql, **params)

    # ------------------------------------------------------------------ workers
    def start_worker(self, **extra_env: str) -> Proc:
        n = len(self.workers) + 1
        proc = self.procs.add(
            Proc.wafleet(["worker"], self.env(**extra_env), self.root / f"worker-{n}.log")
        )
        self.workers.append(proc)
        return proc

    async def connected_count(self, http: httpx.AsyncClient, phones: Iterable[str]) -> int:
        conns = (await self.sim_stats(http))["connections"]
        return sum(1 for p in phones if conns.get(p, 0) > 0)

    async def wait_connected(
        self, http: httpx.AsyncClient, phones: list[str], *, timeout: float
    ) -> None:
        async def all_in() -> bool:
            return await self.connected_count(http, phones) == len(phones)

        await wait_for(
            all_in,
            timeout=timeout,
            what=f"{len(phones)} sessions connected at the simulator",
            interval=0.1,
            procs=self.procs,
        )

    async def db_states(self) -> dict[str, int]:
        rows = await self.query("SELECT state, count(*) AS n FROM whatsapp_sessions GROUP BY state")
        return {str(r["state"]): int(r["n"]) for r in rows}

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


async def query_once(db_url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Rows of one SQL query, on a connection of its own (an observer's read)."""
    from sqlalchemy import text

    from wafleet.db.engine import Database

    db = Database(db_url)
    try:
        async with db.engine.connect() as conn:
            res = await conn.execute(text(sql), params)
            return [dict(r._mapping) for r in res.all()]
    finally:
        await db.close()
