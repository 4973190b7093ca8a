"""The throwaway PostgreSQL fixture itself: fresh databases, stop/start on the same port."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.pg import PgServer


def _query(url: str, sql: bytes) -> object:
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return row[0]


def test_fresh_database_is_empty_and_isolated(pg_server: PgServer, pg_url: str) -> None:
    assert pg_url.startswith(f"postgresql://postgres@127.0.0.1:{pg_server.port}/")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(b"CREATE TABLE t (x int)")
    other = pg_server.new_database()
    try:
        assert _query(other, b"SELECT count(*) FROM pg_tables WHERE schemaname='public'") == 0
    finally:
        pg_server.drop_database(other)


def test_migrated_database_has_schema(pg_migrated_url: str) -> None:
    assert _query(pg_migrated_url, b"SELECT count(*) FROM tenants") == 0
    assert _query(pg_migrated_url, b"SELECT version_num FROM alembic_version") is not None


def test_listens_only_on_loopback(pg_url: str) -> None:
    assert _query(pg_url, b"SHOW listen_addresses") == "127.0.0.1"
    assert _query(pg_url, b"SHOW fsync") == "off"


def test_stop_and_start_keep_port_and_data(pg_server: PgServer, pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(b"CREATE TABLE kept (x int)")
        conn.execute(b"INSERT INTO kept VALUES (42)")
    pg_server.stop()
    assert not pg_server.running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg_url, connect_timeout=2)
    pg_server.start()
    assert pg_server.running
    assert _query(pg_url, b"SELECT x FROM kept") == 42
