"""``/admin/*``: the fleet, for operators (admins only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from wafleet.control_plane import queries
from wafleet.control_plane import schemas as sch
from wafleet.control_plane.deps import AdminDep, SessionDep
from wafleet.states import SessionState, TenantStatus, WorkerStatus

router = APIRouter(
    prefix="/admin", tags=["admin"], responses=sch.error_responses(401, 403, 422, 503)
)


@router.get("/tenants", response_model=sch.AdminTenantsPage)
async def list_tenants(
    _admin: AdminDep,
    session: SessionDep,
    state: Annotated[SessionState | None, Query(description="Session state filter.")] = None,
    status: Annotated[TenantStatus | None, Query(description="Tenant status filter.")] = None,
) -> sch.AdminTenantsPage:
    """Every tenant with its session state and worker, ordered by slug."""
    items = await queries.admin_tenants(
        session,
        state=state.value if state else None,
        status=status.value if status else None,
    )
    return sch.AdminTenantsPage(items=items)


@router.get("/workers", response_model=sch.WorkersPage)
async def list_workers(
    _admin: AdminDep,
    session: SessionDep,
    status: Annotated[WorkerStatus | None, Query(description="Worker status filter.")] = None,
) -> sch.WorkersPage:
    """Worker processes, newest first; `tenants` is how many leases each holds."""
    items = await queries.workers(session, status=status.value if status else None)
    return sch.WorkersPage(items=items)
