"""The throwaway PostgreSQL fixture itself: fresh databases, stop/start on the same port."""

from __future__ import annotations

from pathlib import Path

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


def test_unavailable_skips_or_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support import pg

    monkeypatch.delenv(pg.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no binaries here"):
        pg._unavailable("no binaries here")
    monkeypatch.setenv(pg.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="WAFLEET_REQUIRE_POSTGRES=1"):
        pg._unavailable("no binaries here")


def test_find_bindir_reports_missing_binaries(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.support import pg
    from wafleet.bench import pg as lookup  # where the binaries are looked for

    monkeypatch.setattr(lookup.glob, "glob", lambda _pattern: [])
    monkeypatch.setattr(lookup.shutil, "which", lambda _name: None)
    monkeypatch.setenv("WAFLEET_PG_BINDIR", str(tmp_path))  # exists, but holds no initdb
    with pytest.raises(pg.PgUnavailable, match="initdb"):
        pg.find_bindir()


def test_require_chromium(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.support import browser

    missing = tmp_path / "no-chromium"
    monkeypatch.setattr(browser, "CHROMIUM", missing)
    monkeypatch.delenv(browser.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="Chromium not found"):
        browser.require_chromium()
    monkeypatch.setenv(browser.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="WAFLEET_REQUIRE_BROWSER=1"):
        browser.require_chromium()
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setattr(browser, "CHROMIUM", fake)
    assert browser.require_chromium() == fake
