"""Where a tenant's neonize (whatsmeow) device store lives.

Today: an SQLite file ``<session dir>/neonize.db`` — directory 0700, files 0600 (the child
runs with umask 077, so sqlite's -wal/-shm files get the same mode).

Seam for a later issue: with PostgreSQL, whatsmeow can keep every tenant's device in the
shared database (neonize accepts a ``postgres://`` name instead of a file path), resuming
each tenant by its JID — which is why the engine records the JID in the tenant's
`CredentialStore` once connected. `database_name` is the one place to switch.
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
    """The name neonize opens: a file path (SQLite) — see the module doc for PostgreSQL."""
    del settings  # PostgreSQL-stored devices: a later issue (resume by JID)
    return str(prepare_session_dir(session_dir))


def credential_record(jid: str, phone: str) -> bytes:
    """What the engine stores in the tenant's CredentialStore once linked."""
    return json.dumps({"engine": "neonize", "jid": jid, "phone": phone}).encode()
