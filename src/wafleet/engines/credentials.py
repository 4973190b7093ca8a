"""Credential stores for engines (see `base.CredentialStore`)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path


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
