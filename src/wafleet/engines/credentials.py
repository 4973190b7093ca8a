"""Credential stores for engines (see `base.CredentialStore`)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine


class FileCredentialStore:
    """Credentials as one file in the tenant's session directory (dir 0700, file 0600)."""

    def __init__(self, session_dir: Path, filename: str = "credentials.bin") -> None:
        self.session_dir = session_dir
        self.path = session_dir / filename

    def ensure_dir(self) -> Path:
        self.session_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.session_dir, 0o700)
        return self.session_dir

    async def load(self) -> bytes | None:
        return await asyncio.to_thread(self._load)

    def _load(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    async def save(self, data: bytes) -> None:
        await asyncio.to_thread(self._save, data)

    def _save(self, data: bytes) -> None:
        self.ensure_dir()
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    async def wipe(self) -> None:
        await asyncio.to_thread(self._wipe)

    def _wipe(self) -> None:
        # The whole directory: engines may keep more than the one file (neonize's store).
        if self.session_dir.exists():
            shutil.rmtree(self.session_dir, ignore_errors=True)


class MemoryCredentialStore:
    """In-memory store for tests and benchmarks."""

    def __init__(self, data: bytes | None = None) -> None:
        self.data = data

    async def load(self) -> bytes | None:
        return self.data

    async def save(self, data: bytes) -> None:
        self.data = data

    async def wipe(self) -> None:
        self.data = None


class DbCredentialStore:
    """Credentials in the shared database (multi-worker mode): a tenant that fails over
    to another worker host resumes its session without a new QR scan."""

    def __init__(self, engine: AsyncEngine, tenant_id: int, engine_name: str) -> None:
        self.engine = engine
        self.tenant_id = tenant_id
        self.engine_name = engine_name

    async def load(self) -> bytes | None:
        from sqlalchemy import select

        from wafleet.db.models import SessionCredential as SC

        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(SC.data).where(
                        SC.tenant_id == self.tenant_id, SC.engine == self.engine_name
                    )
                )
            ).first()
        return bytes(row[0]) if row else None

    async def save(self, data: bytes) -> None:
        from sqlalchemy.dialects import postgresql, sqlite

        from wafleet.db.base import utcnow
        from wafleet.db.models import SessionCredential as SC

        values = {
            "tenant_id": self.tenant_id,
            "engine": self.engine_name,
            "data": data,
            "updated_at": utcnow(),
        }
        async with self.engine.begin() as conn:
            ins = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(SC)
            await conn.execute(
                ins.values(**values).on_conflict_do_update(
                    index_elements=[SC.tenant_id, SC.engine],
                    set_={"data": data, "updated_at": values["updated_at"]},
                )
            )

    async def wipe(self) -> None:
        from sqlalchemy import delete

        from wafleet.db.models import SessionCredential as SC

        async with self.engine.begin() as conn:
            await conn.execute(
                delete(SC).where(SC.tenant_id == self.tenant_id, SC.engine == self.engine_name)
            )
