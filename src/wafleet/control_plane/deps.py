"""Authentication and tenant scoping, done once, as FastAPI dependencies.

- ``x-portal-key`` missing or wrong (constant-time compare) → 401 ``unauthorized``.
- ``x-user-email`` missing → 401 ``unauthorized``.
- A user that does not exist → 403 ``unknown_user``: the caller (the portal) proved who
  it is with the key; the person it names simply has no access.
- ``/admin/*`` by a non-admin → 403 ``admin_required``.
- "current" tenant: the user's only tenant; a member of several must pass
  ``?tenant=SLUG`` (422 ``tenant_required`` otherwise — never guess which tenant an action
  is meant for); a user with no tenant → 403 ``no_tenant``.
- ``?tenant=SLUG`` of a tenant the user is not a member of → 403 ``not_a_member`` (also
  when it does not exist, so tenants cannot be enumerated), except for admins: they may
  read (and, as operators, act on) any tenant; an unknown slug is 404 for them.

Every tenant route depends on `tenant_scope`, which yields a `TenantScope` fixed to the
one tenant the caller may see; routes never take a tenant id from anywhere else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from wafleet.control_plane.errors import ApiError
from wafleet.db.engine import Database
from wafleet.db.models import Tenant, TenantMember, User
from wafleet.db.repositories import TenantScope
from wafleet.security import constant_time_equals

portal_key_header = APIKeyHeader(
    name="x-portal-key",
    scheme_name="PortalKey",
    description="The internal key shared by the portal and the control plane.",
    auto_error=False,
)
user_email_header = APIKeyHeader(
    name="x-user-email",
    scheme_name="UserEmail",
    description="The email of the portal user on whose behalf the call is made.",
    auto_error=False,
)


@dataclass(frozen=True)
class Caller:
    user_id: int
    email: str
    is_admin: bool
    # slug -> tenant id, for the tenants the user is a member of
    tenants: dict[str, int]


def database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request (FastAPI caches it: auth and route share it)."""
    async with database(request).session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(db_session)]


async def require_caller(
    request: Request,
    session: SessionDep,
    key: Annotated[str | None, Security(portal_key_header)] = None,
    email: Annotated[str | None, Security(user_email_header)] = None,
) -> Caller:
    expected: str = request.app.state.portal_key
    if not constant_time_equals(key or "", expected):
        raise ApiError(401, "unauthorized", "missing or invalid x-portal-key")
    if not email or not email.strip():
        raise ApiError(401, "unauthorized", "missing x-user-email")
    normalized = email.strip().lower()
    rows = (
        await session.execute(
            select(User.id, User.is_admin, Tenant.slug, Tenant.id)
            .outerjoin(TenantMember, TenantMember.user_id == User.id)
            .outerjoin(Tenant, Tenant.id == TenantMember.tenant_id)
            .where(User.email == normalized)
        )
    ).all()
    if not rows:
        raise ApiError(403, "unknown_user", "no such user")
    tenants = {slug: tid for _, _, slug, tid in rows if slug is not None}
    return Caller(user_id=rows[0][0], email=normalized, is_admin=bool(rows[0][1]), tenants=tenants)


CallerDep = Annotated[Caller, Depends(require_caller)]


async def require_admin(caller: CallerDep) -> Caller:
    if not caller.is_admin:
        raise ApiError(403, "admin_required", "this route is for admins only")
    return caller


TenantQuery = Annotated[
    str | None,
    Query(
        max_length=64,
        description="Tenant slug; needed by members of several tenants and by admins.",
    ),
]


async def resolve_tenant_id(caller: Caller, slug: str | None, session: AsyncSession) -> int:
    if slug is None:
        if len(caller.tenants) == 1:
            return next(iter(caller.tenants.values()))
        if caller.tenants or caller.is_admin:
            choices = ", ".join(sorted(caller.tenants)) or "any tenant slug"
            raise ApiError(
                422, "tenant_required", f"pass ?tenant=SLUG to choose a tenant ({choices})"
            )
        raise ApiError(403, "no_tenant", "the user is not a member of any tenant")
    if slug in caller.tenants:
        return caller.tenants[slug]
    if not caller.is_admin:
        raise ApiError(403, "not_a_member", "the user is not a member of this tenant")
    tid = (await session.execute(select(Tenant.id).where(Tenant.slug == slug))).scalar()
    if tid is None:
        raise ApiError(404, "tenant_not_found", f"no tenant {slug!r}")
    return int(tid)


async def tenant_scope(
    caller: CallerDep, session: SessionDep, tenant: TenantQuery = None
) -> TenantScope:
    """The only way a route gets at tenant data."""
    return TenantScope(session, await resolve_tenant_id(caller, tenant, session))


ScopeDep = Annotated[TenantScope, Depends(tenant_scope)]
AdminDep = Annotated[Caller, Depends(require_admin)]
