"""A real control plane and a real portal (uvicorn on loopback) over one migrated SQLite
database with a few users and tenants."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.portal.servers import ServerThread, serving
from wafleet.config import Settings, load_settings
from wafleet.db.engine import Database
from wafleet.db.models import Tenant, User, WhatsAppSession
from wafleet.db.repositories import TenantRepository
from wafleet.portal.context import PortalContext
from wafleet.security import hash_password

KEY = "p" * 40
PASSWORD = "correct-horse-1"
ALICE = "alice@alpha.test"  # member of alpha
BOB = "bob@bravo.test"  # member of bravo
MULTI = "multi@x.test"  # member of alpha and bravo
ADMIN = "admin@x.test"  # admin, member of nothing


@lru_cache(maxsize=1)
def password_hash() -> str:
    return hash_password(PASSWORD)


async def _seed(url: str) -> None:
    async with Database(url) as db, db.session() as s, s.begin():
        users = {
            e: User(email=e, password_hash=password_hash(), is_admin=e == ADMIN)
            for e in (ALICE, BOB, MULTI, ADMIN)
        }
        s.add_all(users.values())
        await s.flush()
        repo = TenantRepository(s)
        alpha = await repo.create("alpha", "Alpha Bakery", users[ALICE])
        bravo = await repo.create("bravo", "Bravo <Bikes>", users[BOB])
        await repo.add_member(alpha, users[MULTI])
        await repo.add_member(bravo, users[MULTI])


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wafleet.db import migrate

    path = tmp_path_factory.mktemp("portal-template") / "template.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    asyncio.run(_seed(url))
    return path


@dataclass
class Stack:
    settings: Settings
    cp: ServerThread
    portal: ServerThread
    portal_app: FastAPI

    @property
    def url(self) -> str:
        return self.portal.url

    @property
    def ctx(self) -> PortalContext:
        ctx: PortalContext = self.portal_app.state.portal
        return ctx

    def db_run(self, fn: Any) -> Any:
        """Run ``await fn(session)`` in a transaction against the shared database."""

        async def go() -> Any:
            async with Database(self.settings.database_url) as db, db.session() as s, s.begin():
                return await fn(s)

        return asyncio.run(go())

    def set_session(self, slug: str, **fields: Any) -> None:
        async def upd(s: Any) -> None:
            tid = (await s.execute(select(Tenant.id).where(Tenant.slug == slug))).scalar_one()
            row = await s.get(WhatsAppSession, tid)
            for k, v in fields.items():
                setattr(row, k, v)

        self.db_run(upd)


@pytest.fixture
def make_settings(seeded_template: Path, tmp_path: Path) -> Any:
    def make(**overrides: Any) -> Settings:
        data = tmp_path / "data"
        data.mkdir(exist_ok=True)
        db_path = data / "wafleet.db"
        if not db_path.exists():
            shutil.copy(seeded_template, db_path)
        values: dict[str, Any] = {
            "data_dir": data,
            "database_url": f"sqlite:///{db_path}",
            "portal_key": KEY,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def stack(make_settings: Any) -> Iterator[Stack]:
    from wafleet.control_plane.app import create_app as create_cp
    from wafleet.portal.app import create_app as create_portal

    base = make_settings()
    with serving(create_cp(base, run_jobs=False)) as cp:
        settings = make_settings(control_plane_url=cp.url, engine="simulator")
        app = create_portal(settings, poll_interval=0.05, heartbeat_interval=0.5)
        with serving(app) as portal:
            yield Stack(settings, cp, portal, app)
