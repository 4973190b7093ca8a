"""Where a tenant's neonize (whatsmeow) device store lives.

Today: an SQLite file ``<session dir>/neonize.db`` — directory 0700, files 0600 (the child
runs with umask 077, so sqlite's -wal/-shm files get the same mode).

With PostgreSQL (multi-worker mode) whatsmeow keeps every tenant's device in the shared
database instead (neonize accepts a ``postgres://`` name instead of a file path), so a
tenant that fails over to another worker host resumes without a new QR scan. Many devices
then share one store, so a tenant resumes by its own JID (recorded in its
`CredentialStore` — the database one in that mode — once connected), and a tenant without
one pairs a NEW device: never "the first stored session", which would be another tenant's.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from wafleet.config import Settings

NEONIZE_DB = "neonize.db"


def prepare_session_dir(session_dir: Path) -> Path:
    session_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(session_dir, 0o700)
    db = session_dir / NEONIZE_DB
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path, 0o600)
    return db


def database_name(settings: Settings, session_dir: Path) -> str:
    """The name neonize opens: the shared PostgreSQL database, or the tenant's file."""
    if settings.is_postgres:
        return postgres_dsn(settings.database_url)
    return str(prepare_session_dir(session_dir))


def postgres_dsn(database_url: str) -> str:
    """``postgresql+asyncpg://...`` → the ``postgres://...`` name whatsmeow's store opens."""
    scheme, rest = database_url.split("://", 1)
    dsn = "postgres://" + rest
    if "sslmode=" not in rest and scheme.split("+")[0] in {"postgres", "postgresql"}:
        host = rest.split("@")[-1].split("/")[0].split(":")[0]
        if host in {"127.0.0.1", "localhost", "::1", "[::1]"}:
            dsn += ("&" if "?" in rest else "?") + "sslmode=disable"
    return dsn


def resume_jid(record: bytes | None) -> str | None:
    """The JID stored by `credential_record`, if any."""
    if not record:
        return None
    try:
        data = json.loads(record)
    except ValueError:
        return None
    jid = data.get("jid") if isinstance(data, dict) else None
    return jid if isinstance(jid, str) and "@" in jid else None


def credential_record(jid: str, phone: str) -> bytes:
    """What the engine stores in the tenant's CredentialStore once linked."""
    return json.dumps({"engine": "neonize", "jid": jid, "phone": phone}).encode()
