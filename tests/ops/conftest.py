"""Fixtures of the operability tests: a migrated SQLite database with one owner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wafleet.db.engine import Database
from wafleet.db.migrate import upgrade


@pytest.fixture
async def migrated_db(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite:///{tmp_path / 'data' / 'wafleet.db'}"
    await asyncio.to_thread(upgrade, url)
    db = Database(url)
    try:
        yield db
    finally:
        await db.close()
