"""The database engine: SQLite pragmas in effect on every connection, and UTCDateTime
round-trips aware UTC datetimes (any input zone) and refuses naive ones."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, select, text
from sqlalchemy.exc import StatementError

from wafleet.db.base import UTCDateTime
from wafleet.db.engine import SQLITE_BUSY_TIMEOUT_MS, Database

_meta = MetaData()
_times = Table(
    "times",
    _meta,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime),
)


async def test_sqlite_pragmas_on_every_connection(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'sub' / 'p.db'}")  # the directory is created
    try:
        for _ in range(2):  # a second pooled connection gets them too
            async with db.engine.connect() as conn:
                assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
                assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
                busy = (await conn.execute(text("PRAGMA busy_timeout"))).scalar()
                assert busy == SQLITE_BUSY_TIMEOUT_MS
                assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 1  # NORMAL
        assert db.is_sqlite
    finally:
        await db.close()


async def test_sqlite_foreign_keys_are_enforced(tmp_path: Path) -> None:
    from sqlalchemy.exc import IntegrityError

    from wafleet.db import migrate

    url = f"sqlite:///{tmp_path / 'fk.db'}"
    # migrate runs its own event loop: in a thread, not inside this test's loop
    await asyncio.to_thread(migrate.upgrade, url)
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            with pytest.raises(IntegrityError):
                await conn.execute(
                    text(
                        "INSERT INTO tenant_members (tenant_id, user_id, role, created_at) "
                        "VALUES (999, 999, 'owner', '2026-01-01 00:00:00')"
                    )
                )
    finally:
        await db.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def times_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 't.db'}"
    db = Database(url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_meta.create_all)
        yield db
    finally:
        await db.close()


async def test_utc_datetime_round_trip(times_db: Database) -> None:
    plus5 = timezone(timedelta(hours=5, minutes=30))
    values = [
        datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 3, 1, 17, 30, 0, tzinfo=plus5),  # same instant as 12:00 UTC
        datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
    ]
    async with times_db.engine.begin() as conn:
        for i, v in enumerate(values, 1):
            await conn.execute(insert(_times).values(id=i, at=v))
        await conn.execute(insert(_times).values(id=99, at=None))
    async with times_db.engine.connect() as conn:
        rows = {r[0]: r[1] for r in await conn.execute(select(_times.c.id, _times.c.at))}
    for i, v in enumerate(values, 1):
        got = rows[i]
        assert got is not None
        assert got.tzinfo is not None
        assert got.utcoffset() == timedelta(0)
        assert got == v
    assert rows[99] is None


async def test_utc_datetime_refuses_naive(times_db: Database) -> None:
    async with times_db.engine.begin() as conn:
        with pytest.raises(StatementError, match="naive datetime"):
            await conn.execute(insert(_times).values(id=1, at=datetime(2026, 1, 1)))
