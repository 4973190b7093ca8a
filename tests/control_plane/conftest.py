"""Fixtures: a migrated database (SQLite copy of a per-session template; PostgreSQL where
a test asks for it), the seeded fleet and the app behind an in-process ASGI client."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.control_plane.seed import KEY, Fleet, seed_fleet
from wafleet.config import Settings, load_settings
from wafleet.control_plane.app import create_app
from wafleet.db.engine import Database

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wafleet.db import migrate

    path = tmp_path_factory.mktemp("cp-template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "data" / "wafleet.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_migrated_url")
        return url
    return sqlite_url


@pytest.fixture
def make_settings(tmp_path: Path, db_url: str) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "database_url": db_url,
            "portal_key": KEY,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    async with Database(db_url) as database:
        yield database


@pytest.fixture
async def fleet(db: Database) -> Fleet:
    return await seed_fleet(db, NOW)


@pytest.fixture
async def app(settings: Settings, fleet: Fleet) -> AsyncIterator[FastAPI]:
    application = create_app(settings, clock=lambda: NOW, run_jobs=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://cp") as c:
        yield c


def headers(email: str | None, key: str | None = KEY) -> dict[str, str]:
    h: dict[str, str] = {}
    if key is not None:
        h["x-portal-key"] = key
    if email is not None:
        h["x-user-email"] = email
    return h


class LiveControlPlane:
    def __init__(self, url: str, proc: object, data_dir: Path) -> None:
        self.url = url
        self.proc = proc
        self.data_dir = data_dir


@pytest.fixture(scope="session")
def live_cp(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveControlPlane]:
    """A real `wafleet control-plane` process on loopback over a seeded SQLite fleet."""
    import asyncio

    from tests.support.procs import base_env, free_port, running, wait_http_ok

    data_dir = tmp_path_factory.mktemp("live-cp") / "data"
    data_dir.mkdir()
    db_path = data_dir / "wafleet.db"
    shutil.copy(sqlite_template, db_path)

    async def _seed() -> None:
        async with Database(f"sqlite:///{db_path}") as database:
            await seed_fleet(database, datetime.now(UTC))

    asyncio.run(_seed())
    port = free_port()
    env = base_env(data_dir, WAFLEET_PORTAL_KEY=KEY)
    log_path = data_dir.parent / "control-plane.log"
    with running(["control-plane", "--port", str(port)], env, log_path) as proc:
        url = f"http://127.0.0.1:{port}"
        try:
            wait_http_ok(f"{url}/healthz", timeout=30)
        except AssertionError:
            raise AssertionError(proc.output()) from None
        yield LiveControlPlane(url, proc, data_dir)
