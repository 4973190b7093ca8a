"""``/healthz`` and ``/metrics``: no auth (the control plane listens on an internal
address)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from wafleet.control_plane import schemas as sch
from wafleet.control_plane.deps import database
from wafleet.control_plane.errors import error_json
from wafleet.control_plane.metrics import render_metrics
from wafleet.logging import get_logger

log = get_logger("wafleet.control_plane")
router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=sch.HealthResponse,
    responses={503: {"model": sch.ErrorResponse, "description": "Database unreachable."}},
)
async def healthz(request: Request) -> JSONResponse:
    """200 while the database answers, 503 otherwise."""
    try:
        async with database(request).engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as err:
        log.warning("health check failed", error=str(err).splitlines()[0] if str(err) else "")
        return error_json(503, "database_unavailable", "the database does not answer")
    return JSONResponse({"status": "ok"})


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        503: {"model": sch.ErrorResponse, "description": "Database unreachable."},
    },
)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition, computed from the database at scrape time."""
    body, content_type = await render_metrics(database(request))
    return Response(content=body, media_type=content_type)
