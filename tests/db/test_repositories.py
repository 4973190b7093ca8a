"""Repositories: validation of users and tenants, what creating a tenant sets up, and
tenant scoping (one tenant's queries never see another's rows)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from wafleet.db import migrate
from wafleet.db.base import utcnow
from wafleet.db.engine import Database
from wafleet.db.models import (
    ConnectionEvent,
    MessageLog,
    TenantCommand,
    TenantLease,
    TenantMember,
    WhatsAppSession,
)
from wafleet.db.repositories import (
    TenantRepository,
    TenantScope,
    UserRepository,
    enqueue_command,
    normalize_email,
)
from wafleet.errors import NotFoundError, UsageError
from wafleet.security import verify_password


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    await asyncio.to_thread(migrate.upgrade, url)  # alembic runs its own loop
    database = Database(url)
    try:
        yield database
    finally:
        await database.close()


@pytest.mark.parametrize("slug", ["a", "acme", "acme-2", "0x", "a" * 64])
def test_valid_slugs(slug: str) -> None:
    from wafleet.db.repositories import SLUG_RE

    assert SLUG_RE.match(slug)


@pytest.mark.parametrize(
    "slug", ["", "Acme", "a_b", "-a", "a-", "a" * 65, "a b", "ä", "a.b", "../x", "a\n"]
)
async def test_invalid_slugs_refused(db: Database, slug: str) -> None:
    async with db.session() as s, s.begin():
        owner = await UserRepository(s).create("o@example.com", "password1")
        with pytest.raises(UsageError, match="slug"):
            await TenantRepository(s).create(slug, "Name", owner)


@pytest.mark.parametrize("email", ["", "x", "a@b", "a b@c.d", "@c.d", "a@@c.d"])
def test_invalid_emails_refused(email: str) -> None:
    with pytest.raises(UsageError, match="email"):
        normalize_email(email)


async def test_user_create_normalises_and_hashes(db: Database) -> None:
    async with db.session() as s, s.begin():
        repo = UserRepository(s)
        user = await repo.create("  Ann@Example.COM ", "password1", is_admin=True)
        assert user.email == "ann@example.com"
        assert user.password_hash != "password1"
        assert verify_password(user.password_hash, "password1")
        assert not verify_password(user.password_hash, "password2")
        assert await repo.get_by_email("ANN@example.com") is user
        with pytest.raises(UsageError, match="already exists"):
            await repo.create("ann@example.com", "password1")
        with pytest.raises(UsageError, match="password"):
            await repo.create("bob@example.com", "seven77")
        assert await repo.count() == 1


async def test_tenant_create_sets_up_membership_session_and_lease(db: Database) -> None:
    async with db.session() as s, s.begin():
        owner = await UserRepository(s).create("o@example.com", "password1")
        repo = TenantRepository(s)
        tenant = await repo.create("acme", "  Acme Ltd ", owner)
        assert tenant.name == "Acme Ltd"
        assert tenant.status == "ACTIVE"
        assert tenant.config == {}
        with pytest.raises(UsageError, match="already exists"):
            await repo.create("acme", "Other", owner)
        with pytest.raises(UsageError, match="name"):
            await repo.create("blank", "   ", owner)
    async with db.session() as s:
        member = await s.get(TenantMember, (tenant.id, owner.id))
        assert member is not None
        assert member.role == "owner"
        ws = await s.get(WhatsAppSession, tenant.id)
        assert ws is not None
        assert ws.state == "DISCONNECTED"
        lease = await s.get(TenantLease, tenant.id)
        assert lease is not None
        assert lease.worker_id is None
        assert await UserRepository(s).tenant_ids(owner) == [tenant.id]
        with pytest.raises(NotFoundError):
            await TenantRepository(s).require("nope")


async def test_set_config_bumps_version_and_enqueue_command(db: Database) -> None:
    async with db.session() as s, s.begin():
        owner = await UserRepository(s).create("o@example.com", "password1")
        repo = TenantRepository(s)
        tenant = await repo.create("acme", "Acme", owner)
        await repo.set_config(tenant, {"rules": []})
        await repo.set_config(tenant, {"rules": [], "webhook": None})
        cmd = await enqueue_command(s, tenant.id, "config", requested_by="cli")
    async with db.session() as s:
        t = await TenantRepository(s).require("acme")
        assert t.config_version == 2
        assert t.config == {"rules": [], "webhook": None}
        stored = await s.get(TenantCommand, cmd.id)
        assert stored is not None
        assert stored.processed_at is None
        assert stored.kind == "config"


async def test_tenant_scope_isolates_tenants_and_pages(db: Database) -> None:
    async with db.session() as s, s.begin():
        owner = await UserRepository(s).create("o@example.com", "password1")
        a = await TenantRepository(s).create("a", "A", owner)
        b = await TenantRepository(s).create("b", "B", owner)
        now = utcnow()
        for tenant, n in ((a, 5), (b, 3)):
            for i in range(n):
                s.add(
                    MessageLog(
                        tenant_id=tenant.id,
                        direction="in" if i % 2 == 0 else "out",
                        wa_id=f"{tenant.slug}-{i}",
                        chat="c",
                        sender="s",
                        body=f"{tenant.slug} {i}",
                        status="PENDING" if i % 2 else "RECEIVED",
                        created_at=now - timedelta(minutes=i),
                    )
                )
                s.add(ConnectionEvent(tenant_id=tenant.id, kind="state", to_state="CONNECTING"))
        # one old message outside the 24h window
        s.add(
            MessageLog(
                tenant_id=a.id,
                direction="in",
                wa_id="a-old",
                chat="c",
                sender="s",
                body="old",
                status="PROCESSED",
                created_at=now - timedelta(days=2),
            )
        )
    async with db.session() as s:
        scope_a = TenantScope(s, a.id)
        page1 = await scope_a.logs(limit=4)
        assert len(page1.items) == 4
        assert page1.next_before is not None
        page2 = await scope_a.logs(limit=4, before=page1.next_before)
        assert page2.next_before is None
        bodies = [m.body for m in page1.items + page2.items]
        assert len(bodies) == 6
        assert all(body.startswith("a ") or body == "old" for body in bodies)
        ids = [m.id for m in page1.items + page2.items]
        assert ids == sorted(ids, reverse=True)  # newest first

        outs = await scope_a.logs(limit=50, direction="out")
        assert {m.direction for m in outs.items} == {"out"}

        events = await TenantScope(s, b.id).events(limit=50)
        assert len(events.items) == 3
        assert {e.tenant_id for e in events.items} == {b.id}

        counts = await scope_a.message_counts(now - timedelta(hours=24))
        assert counts == {"in_24h": 3, "out_24h": 2, "pending_out": 2}
        assert (await scope_a.tenant()).slug == "a"
        assert await scope_a.worker() is None
