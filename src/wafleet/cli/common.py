"""Helpers shared by CLI commands."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from wafleet.config import Settings
from wafleet.db.engine import Database
from wafleet.errors import ConfigError


@asynccontextmanager
async def open_db(cfg: Settings, *, require_schema: bool = True) -> AsyncIterator[Database]:
    """The database, refusing (exit 2, one line) when it was never migrated."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError, OperationalError

    db = Database(cfg.database_url)
    try:
        if require_schema:
            try:
                async with db.engine.connect() as conn:
                    await conn.execute(text("SELECT 1 FROM tenants LIMIT 1"))
            except (OperationalError, DBAPIError, OSError) as err:
                msg = str(getattr(err, "orig", err)).splitlines()[0]
                if "no such table" in msg or "does not exist" in msg:
                    raise ConfigError(
                        "WAFLEET_DATABASE_URL: the database has no schema; run `wafleet migrate`"
                    ) from None
                raise ConfigError(f"WAFLEET_DATABASE_URL: cannot use the database: {msg}") from None
        yield db
    finally:
        await db.close()
