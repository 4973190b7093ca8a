"""Helpers shared by CLI commands."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from wafleet.errors import ConfigError

if TYPE_CHECKING:
    from wafleet.config import Settings
    from wafleet.db.engine import Database


@asynccontextmanager
async def open_db(cfg: Settings, *, require_schema: bool = True) -> AsyncIterator[Database]:
    """The database, refusing (exit 2, one line) when it was never migrated."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError, OperationalError

    from wafleet.db.engine import Database

    try:
        db = Database(cfg.database_url)  # creates a SQLite file's directory
    except OSError as err:
        raise ConfigError(f"WAFLEET_DATABASE_URL: cannot use the database: {err}") from None
    try:
        if require_schema:
            try:
                async with db.engine.connect() as conn:
                    await conn.execute(text("SELECT 1 FROM tenants LIMIT 1"))
            except (OperationalError, DBAPIError, OSError) as err:
                msg = db_error_line(err)
                if is_missing_schema(msg):
                    raise ConfigError(
                        "WAFLEET_DATABASE_URL: the database has no schema; run `wafleet migrate`"
                    ) from None
                raise ConfigError(f"WAFLEET_DATABASE_URL: cannot use the database: {msg}") from None
        yield db
    finally:
        await db.close()


def db_error_line(err: BaseException) -> str:
    """The driver's own message (not SQLAlchemy's wrapper), first line only."""
    lines = str(getattr(err, "orig", None) or err).strip().splitlines()
    return lines[0] if lines else err.__class__.__name__


def is_missing_schema(msg: str) -> bool:
    # SQLite: 'no such table: tenants'; PostgreSQL: 'relation "tenants" does not exist'.
    # (Not just "does not exist": that is also 'database "x" does not exist'.)
    return "no such table" in msg or ("relation" in msg and "does not exist" in msg)
