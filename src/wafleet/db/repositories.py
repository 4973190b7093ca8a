"""Repositories. Tenant scoping lives here, once: `TenantScope` is built from a tenant id
and every query it makes is filtered by that id, so no caller can forget it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from wafleet.db.base import utcnow
from wafleet.db.models import (
    ConnectionEvent,
    MessageLog,
    Tenant,
    TenantCommand,
    TenantLease,
    TenantMember,
    User,
    WhatsAppSession,
    WorkerProcess,
)
from wafleet.errors import NotFoundError, UsageError
from wafleet.security import MIN_PASSWORD_LEN, hash_password
from wafleet.states import SessionState, TenantStatus

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?\Z")  # \Z: "$" allows a final "\n"
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_email(email: str) -> str:
    e = email.strip().lower()
    if not EMAIL_RE.match(e) or len(e) > 320:
        raise UsageError(f"invalid email address: {email!r}")
    return e


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def get_by_email(self, email: str) -> User | None:
        return (
            await self.s.execute(select(User).where(User.email == email.strip().lower()))
        ).scalar_one_or_none()

    async def create(self, email: str, password: str, *, is_admin: bool = False) -> User:
        email = normalize_email(email)
        if len(password) < MIN_PASSWORD_LEN:
            raise UsageError(f"password: must be at least {MIN_PASSWORD_LEN} characters")
        if await self.get_by_email(email) is not None:
            raise UsageError(f"user {email} already exists")
        user = User(email=email, password_hash=hash_password(password), is_admin=is_admin)
        self.s.add(user)
        await self.s.flush()
        return user

    async def tenant_ids(self, user: User) -> list[int]:
        rows = await self.s.execute(
            select(TenantMember.tenant_id).where(TenantMember.user_id == user.id)
        )
        return [r[0] for r in rows]

    async def count(self) -> int:
        return int((await self.s.execute(select(func.count(User.id)))).scalar_one())


class TenantRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def get_by_slug(self, slug: str) -> Tenant | None:
        return (
            await self.s.execute(select(Tenant).where(Tenant.slug == slug))
        ).scalar_one_or_none()

    async def require(self, slug: str) -> Tenant:
        tenant = await self.get_by_slug(slug)
        if tenant is None:
            raise NotFoundError(f"tenant {slug!r} does not exist")
        return tenant

    async def create(self, slug: str, name: str, owner: User) -> Tenant:
        if not SLUG_RE.match(slug):
            raise UsageError(
                f"invalid slug {slug!r}: lowercase letters, digits and '-', 1-64 characters"
            )
        if not name.strip() or len(name) > 200:
            raise UsageError("name: must be 1-200 characters")
        if await self.get_by_slug(slug) is not None:
            raise UsageError(f"tenant {slug} already exists")
        tenant = Tenant(slug=slug, name=name.strip(), status=TenantStatus.ACTIVE.value, config={})
        self.s.add(tenant)
        await self.s.flush()
        self.s.add(TenantMember(tenant_id=tenant.id, user_id=owner.id, role="owner"))
        self.s.add(WhatsAppSession(tenant_id=tenant.id, state=SessionState.DISCONNECTED.value))
        self.s.add(TenantLease(tenant_id=tenant.id, epoch=0))
        await self.s.flush()
        return tenant

    async def add_member(self, tenant: Tenant, user: User, role: str = "member") -> None:
        exists = await self.s.get(TenantMember, (tenant.id, user.id))
        if exists is None:
            self.s.add(TenantMember(tenant_id=tenant.id, user_id=user.id, role=role))
            await self.s.flush()

    async def list_overview(self) -> Sequence[tuple[Tenant, WhatsAppSession | None]]:
        rows = await self.s.execute(
            select(Tenant, WhatsAppSession)
            .outerjoin(WhatsAppSession, WhatsAppSession.tenant_id == Tenant.id)
            .order_by(Tenant.slug)
        )
        return [(t, ws) for t, ws in rows.all()]

    async def set_config(self, tenant: Tenant, config: dict[str, Any]) -> None:
        tenant.config = config
        tenant.config_version = (tenant.config_version or 0) + 1
        tenant.updated_at = utcnow()
        await self.s.flush()


async def enqueue_command(
    session: AsyncSession,
    tenant_id: int,
    kind: str,
    payload: dict[str, Any] | None = None,
    requested_by: str | None = None,
) -> TenantCommand:
    """Queue a request for the worker holding the tenant (see worker.commands)."""
    cmd = TenantCommand(
        tenant_id=tenant_id, kind=kind, payload=payload or {}, requested_by=requested_by
    )
    session.add(cmd)
    await session.flush()
    await notify_commands(session, tenant_id)
    return cmd


COMMANDS_CHANNEL = "wafleet_commands"


async def notify_commands(session: AsyncSession, tenant_id: int) -> None:
    """Wake the workers at once on PostgreSQL (LISTEN/NOTIFY, delivered at commit).
    On SQLite the single worker notices new commands with a cheap indexed poll."""
    from sqlalchemy import text

    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_notify(:ch, :payload)"),
            {"ch": COMMANDS_CHANNEL, "payload": str(tenant_id)},
        )


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_before: int | None


class TenantScope:
    """Every read of one tenant's data goes through here: the tenant id is fixed at
    construction and added to every query."""

    def __init__(self, session: AsyncSession, tenant_id: int) -> None:
        self.s = session
        self.tenant_id = tenant_id

    async def tenant(self) -> Tenant:
        t = await self.s.get(Tenant, self.tenant_id)
        assert t is not None
        return t

    async def session_row(self) -> WhatsAppSession | None:
        return await self.s.get(WhatsAppSession, self.tenant_id)

    async def worker(self) -> WorkerProcess | None:
        ws = await self.session_row()
        lease = await self.s.get(TenantLease, self.tenant_id)
        worker_id = (lease.worker_id if lease else None) or (ws.worker_id if ws else None)
        if not worker_id:
            return None
        return await self.s.get(WorkerProcess, worker_id)

    async def logs(
        self,
        *,
        limit: int,
        before: int | None = None,
        direction: str | None = None,
        chat: str | None = None,
    ) -> Page:
        q = select(MessageLog).where(MessageLog.tenant_id == self.tenant_id)
        if before is not None:
            q = q.where(MessageLog.id < before)
        if direction is not None:
            q = q.where(MessageLog.direction == direction)
        if chat is not None:
            q = q.where(MessageLog.chat == chat)
        rows = list(
            (await self.s.execute(q.order_by(MessageLog.id.desc()).limit(limit + 1))).scalars()
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, rows[-1].id if more and rows else None)

    async def events(self, *, limit: int, before: int | None = None) -> Page:
        q = select(ConnectionEvent).where(ConnectionEvent.tenant_id == self.tenant_id)
        if before is not None:
            q = q.where(ConnectionEvent.id < before)
        rows = list(
            (await self.s.execute(q.order_by(ConnectionEvent.id.desc()).limit(limit + 1))).scalars()
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, rows[-1].id if more and rows else None)

    async def message_counts(self, since: datetime) -> dict[str, int]:
        q = (
            select(MessageLog.direction, func.count(MessageLog.id))
            .where(MessageLog.tenant_id == self.tenant_id, MessageLog.created_at >= since)
            .group_by(MessageLog.direction)
        )
        counts = {d: int(n) for d, n in (await self.s.execute(q)).all()}
        pending = (
            await self.s.execute(
                select(func.count(MessageLog.id)).where(
                    MessageLog.tenant_id == self.tenant_id,
                    MessageLog.direction == "out",
                    MessageLog.status == "PENDING",
                )
            )
        ).scalar_one()
        return {
            "in_24h": counts.get("in", 0),
            "out_24h": counts.get("out", 0),
            "pending_out": int(pending),
        }
