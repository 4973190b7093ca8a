"""The stale-worker job: a RUNNING worker whose last heartbeat is older than
``WAFLEET_STALE_AFTER`` becomes STALE, the sessions it held become DISCONNECTED with cause
``worker_stale`` (one timeline event each) and its leases are released (``epoch`` kept:
it is the fencing token of the next claim). The worker sets itself RUNNING again with its
next heartbeat, if it ever sends one.

Each stale worker is handled in its own transaction, and the worker row is updated with
a guard on its status and heartbeat, so a heartbeat that lands in between wins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from wafleet.db.base import utcnow
from wafleet.db.engine import Database
from wafleet.db.models import ConnectionEvent, TenantLease, WhatsAppSession, WorkerProcess
from wafleet.logging import get_logger
from wafleet.states import Action, Cause, SessionState, WorkerStatus

log = get_logger("wafleet.control_plane.jobs")

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]
MIN_PERIOD = 0.05


def job_period(heartbeat_interval: float, stale_after: float) -> float:
    """Often enough that a silent worker is STALE within stale_after + one heartbeat."""
    return max(MIN_PERIOD, min(heartbeat_interval, stale_after / 3))


@dataclass(frozen=True)
class StaleWorker:
    worker_id: str
    silent_for: float
    sessions: int
    leases: int


class StaleWorkerJob:
    def __init__(
        self,
        db: Database,
        *,
        stale_after: float,
        period: float,
        clock: Clock = utcnow,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.db = db
        self.stale_after = timedelta(seconds=stale_after)
        self.period = period
        self.clock = clock
        self.sleep = sleep
        self.runs = 0

    async def run_once(self) -> list[StaleWorker]:
        """One pass; returns the workers marked STALE by it."""
        now = self.clock()
        cutoff = now - self.stale_after
        async with self.db.session() as s:
            candidates = (
                await s.execute(
                    select(WorkerProcess.id, WorkerProcess.last_heartbeat_at).where(
                        WorkerProcess.status == WorkerStatus.RUNNING.value,
                        WorkerProcess.last_heartbeat_at < cutoff,
                    )
                )
            ).all()
        marked: list[StaleWorker] = []
        for worker_id, last_hb in candidates:
            result = await self._mark(worker_id, now, cutoff, (now - last_hb).total_seconds())
            if result is not None:
                marked.append(result)
        self.runs += 1
        return marked

    async def _mark(
        self, worker_id: str, now: datetime, cutoff: datetime, silent_for: float
    ) -> StaleWorker | None:
        async with self.db.session() as s, s.begin():
            res = await s.execute(
                update(WorkerProcess)
                .where(
                    WorkerProcess.id == worker_id,
                    WorkerProcess.status == WorkerStatus.RUNNING.value,
                    WorkerProcess.last_heartbeat_at < cutoff,
                )
                .values(status=WorkerStatus.STALE.value)
            )
            if getattr(res, "rowcount", 0) != 1:
                return None  # it sent a heartbeat meanwhile
            detail = f"worker {worker_id} silent for {silent_for:.1f}s"
            held = (
                await s.execute(
                    select(WhatsAppSession).where(
                        # held: written by it, or leased to it (its first write may not
                        # have landed yet)
                        or_(
                            WhatsAppSession.worker_id == worker_id,
                            WhatsAppSession.tenant_id.in_(
                                select(TenantLease.tenant_id).where(
                                    TenantLease.worker_id == worker_id
                                )
                            ),
                        ),
                        WhatsAppSession.state != SessionState.LOGGED_OUT.value,
                    )
                )
            ).scalars()
            n_sessions = 0
            for ws in held:
                s.add(
                    ConnectionEvent(
                        tenant_id=ws.tenant_id,
                        at=now,
                        kind="disconnect",
                        from_state=ws.state,
                        to_state=SessionState.DISCONNECTED.value,
                        cause=Cause.WORKER_STALE.value,
                        detail=detail,
                        worker_id=worker_id,
                    )
                )
                ws.state = SessionState.DISCONNECTED.value
                ws.connected_since = None
                ws.last_disconnect_cause = Cause.WORKER_STALE.value
                ws.last_disconnect_action = Action.RETRYING.value
                ws.last_disconnect_at = now
                ws.last_disconnect_detail = detail
                n_sessions += 1
            leases = await s.execute(
                update(TenantLease)
                .where(TenantLease.worker_id == worker_id)
                .values(worker_id=None, expires_at=now)
            )
            n_leases = int(getattr(leases, "rowcount", 0) or 0)
        log.warning(
            "worker stale",
            worker=worker_id,
            silent_for=round(silent_for, 1),
            sessions=n_sessions,
            leases_released=n_leases,
        )
        return StaleWorker(worker_id, silent_for, n_sessions, n_leases)

    async def run(self) -> None:
        """Forever, every `period` seconds; a failed pass is logged and retried."""
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except (SQLAlchemyError, OSError) as err:  # database down: next period
                log.warning("stale-worker pass failed", error=f"{type(err).__name__}: {err}")
            except Exception:  # a bug: say so loudly, but keep guarding the fleet
                log.exception("stale-worker pass crashed")
            await self.sleep(self.period)
