"""Shared fixtures: the throwaway PostgreSQL cluster (see tests/support/pg.py)."""

from __future__ import annotations

import pytest

from tests.support.pg import pg_migrated_url, pg_server, pg_url

__all__ = ["pg_migrated_url", "pg_server", "pg_url"]

_PG_FIXTURES = {"pg_server", "pg_url", "pg_migrated_url"}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that use PostgreSQL carry the marker, so `-m "not postgres"` deselects them.
    # (Parametrized tests that call request.getfixturevalue("pg_url") mark their
    # PostgreSQL param themselves: pytest.param("postgres", marks=pytest.mark.postgres).)
    for item in items:
        if _PG_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)
