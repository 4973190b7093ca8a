"""neonize's device store in the shared PostgreSQL database (multi-worker mode): the
offline engine opens whatsmeow's store there (no file in the session dir), a tenant with
a recorded JID resumes it, and one without pairs a new device — never another tenant's."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from tests.engines.neonize.helpers import make_engine
from wafleet.config import Settings
from wafleet.db.engine import Database
from wafleet.engines.base import ConnectFailed
from wafleet.engines.neonize import store
from wafleet.states import Cause

pytestmark = pytest.mark.postgres


def test_dsn_is_the_shared_database_with_local_tls_off() -> None:
    dsn = store.postgres_dsn("postgresql://postgres@127.0.0.1:5999/wf")
    assert dsn == "postgres://postgres@127.0.0.1:5999/wf?sslmode=disable"
    assert store.postgres_dsn("postgresql+asyncpg://u:p@db.internal/wf?sslmode=require") == (
        "postgres://u:p@db.internal/wf?sslmode=require"
    )


def test_resume_jid_comes_only_from_a_well_formed_record() -> None:
    assert store.resume_jid(store.credential_record("15550001@s.whatsapp.net", "+15550001")) == (
        "15550001@s.whatsapp.net"
    )
    assert store.resume_jid(None) is None
    assert store.resume_jid(b"garbage") is None
    assert store.resume_jid(b'{"jid": "no-at-sign"}') is None


async def test_offline_engine_keeps_its_device_store_in_postgres(
    tmp_path: Path, pg_migrated_url: str
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=pg_migrated_url)
    engine, _rec = make_engine(tmp_path, settings=settings)
    with pytest.raises(ConnectFailed) as failed:
        await engine.connect()
    assert failed.value.cause is Cause.NETWORK
    await engine.close()
    assert not (tmp_path / "sessions" / "acme" / "neonize.db").exists()
    db = Database(pg_migrated_url)
    try:
        async with db.engine.connect() as conn:
            tables = (
                (
                    await conn.execute(
                        text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'whatsmeow_%'")
                    )
                )
                .scalars()
                .all()
            )
    finally:
        await db.close()
    assert "whatsmeow_device" in tables, tables
