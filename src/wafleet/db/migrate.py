"""Run Alembic migrations programmatically (``wafleet migrate``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' must be escaped for configparser interpolation (passwords may contain it)
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    from wafleet.config import to_async_url

    url = to_async_url(database_url)
    if url.startswith("sqlite"):
        from wafleet.db.engine import _sqlite_path

        path = _sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def current_revision(database_url: str) -> str | None:
    """The database's revision, or None when it was never migrated."""
    import asyncio

    from sqlalchemy import text

    from wafleet.db.engine import make_engine

    async def _read() -> str | None:
        engine = make_engine(database_url)
        try:
            async with engine.connect() as conn:
                try:
                    row = (
                        await conn.execute(text("SELECT version_num FROM alembic_version"))
                    ).first()
                except Exception:  # the table does not exist yet
                    return None
                return str(row[0]) if row else None
        finally:
            await engine.dispose()

    return asyncio.run(_read())


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None
    return head
