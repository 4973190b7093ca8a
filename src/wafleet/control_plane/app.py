"""`create_app(settings)`: the control plane's FastAPI application.

Nothing happens at import. `create_app` checks the portal key (ConfigError → the CLI
prints one line and exits 2); the lifespan opens the database and runs the stale-worker
job as a named task, cancelled and awaited at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from wafleet.config import Settings
from wafleet.control_plane.errors import install_error_handlers
from wafleet.control_plane.jobs import Clock, StaleWorkerJob, job_period
from wafleet.control_plane.routes import admin, health, portal
from wafleet.db.base import utcnow
from wafleet.db.engine import Database
from wafleet.http_limits import BodyLimitMiddleware, MiB
from wafleet.logging import get_logger
from wafleet.ops.alerts import AlertDispatcher

log = get_logger("wafleet.control_plane")
JOB_TASK_NAME = "control-plane:stale-workers"
SHUTDOWN_TIMEOUT = 5.0
# The largest body is a rules document (the portal caps it at 1 M characters).
MAX_BODY_BYTES = 2 * MiB


def create_app(settings: Settings, *, clock: Clock = utcnow, run_jobs: bool = True) -> FastAPI:
    portal_key = settings.resolve_portal_key()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url)
        app.state.db = db
        job_task: asyncio.Task[None] | None = None
        if run_jobs:
            job = StaleWorkerJob(
                db,
                stale_after=settings.stale_after,
                period=job_period(settings.heartbeat_interval, settings.stale_after),
                clock=clock,
            )
            app.state.stale_job = job
            job_task = asyncio.create_task(job.run(), name=JOB_TASK_NAME)
        alerts = AlertDispatcher.from_settings(settings, db) if run_jobs else None
        if alerts is not None:
            await alerts.start()
        log.info("control plane started", database=_redacted(settings.database_url))
        try:
            yield
        finally:
            if alerts is not None:
                await alerts.stop()
            if job_task is not None:
                job_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(job_task, SHUTDOWN_TIMEOUT)
            await db.close()
            log.info("control plane stopped")

    app = FastAPI(
        title="wafleet control plane",
        version="1",
        description="Internal API of wafleet (ARCHITECTURE.md, 'Control plane HTTP').",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.portal_key = portal_key
    app.state.clock = clock
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(portal.router)
    app.include_router(admin.router)
    _merge_security_requirements(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    return app


def _merge_security_requirements(app: FastAPI) -> None:
    """FastAPI lists two header schemes as alternatives ([{A}, {B}]); both are required
    (x-portal-key AND x-user-email), which OpenAPI spells [{A, B}]."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for path_item in schema.get("paths", {}).values():
                for op in path_item.values():
                    reqs = op.get("security") if isinstance(op, dict) else None
                    if reqs and len(reqs) > 1:
                        op["security"] = [{k: v for req in reqs for k, v in req.items()}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _redacted(url: str) -> str:
    """The database URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported by the first query anyway
        return "<unparsable>"
