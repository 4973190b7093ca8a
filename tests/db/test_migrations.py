"""Migrations: upgrade an empty database, are reversible, and the migrated schema is exactly
the models' (Alembic autogenerate finds nothing to add) — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from wafleet.db import migrate, models  # noqa: F401  (models registers the tables)
from wafleet.db.base import Base
from wafleet.db.engine import make_engine

# every table the models declare; a model without a migration shows up in the diff below
EXPECTED_TABLES = set(Base.metadata.tables)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return f"sqlite:///{tmp_path / 'm.db'}"


def _on_connection(url: str, fn: Any) -> Any:
    async def go() -> Any:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(fn)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _tables(url: str) -> set[str]:
    return set(_on_connection(url, lambda c: inspect(c).get_table_names())) - {"alembic_version"}


def _schema_diff(url: str) -> list[Any]:
    def diff(conn: Connection) -> list[Any]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, Base.metadata))

    result: list[Any] = _on_connection(url, diff)
    return result


def test_upgrade_downgrade_upgrade(empty_db_url: str) -> None:
    assert migrate.current_revision(empty_db_url) is None
    assert _tables(empty_db_url) == set()

    migrate.upgrade(empty_db_url)
    assert migrate.current_revision(empty_db_url) == migrate.head_revision()
    assert _tables(empty_db_url) == EXPECTED_TABLES

    migrate.downgrade(empty_db_url, "base")
    assert migrate.current_revision(empty_db_url) is None
    assert _tables(empty_db_url) == set()

    migrate.upgrade(empty_db_url)
    assert _tables(empty_db_url) == EXPECTED_TABLES
    migrate.upgrade(empty_db_url)  # at head already: a no-op
    assert migrate.current_revision(empty_db_url) == migrate.head_revision()


def test_migrated_schema_matches_models(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url)
    assert _schema_diff(empty_db_url) == []


def test_schema_diff_detects_drift(empty_db_url: str) -> None:
    """The comparison above is not vacuous: a missing index is reported."""
    from sqlalchemy import text

    migrate.upgrade(empty_db_url)
    _on_connection(
        empty_db_url,
        lambda c: (c.execute(text("DROP INDEX ix_whatsapp_sessions_state")), c.commit()),
    )
    diff = _schema_diff(empty_db_url)
    assert [d[0] for d in diff] == ["add_index"]
