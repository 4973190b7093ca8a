"""SessionRecorder: the one way a TenantBot changes its persisted session.

It checks every state change against the transition table, logs it, and writes the
session row plus a timeline event in one fenced write (nothing is written once the lease
is gone; a write the fence refuses reports the lost lease).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from wafleet.states import Cause, SessionState
from wafleet.worker import store
from wafleet.worker.batcher import WriteBatcher
from wafleet.worker.clock import Clock
from wafleet.worker.lifecycle import check_transition
from wafleet.worker.store import EventRecord, Fence


class SessionRecorder:
    def __init__(
        self,
        *,
        fence: Fence,
        batcher: WriteBatcher,
        clock: Clock,
        log: Any,
        fenced: Callable[[], bool],
        on_lease_lost: Callable[[], None],
    ) -> None:
        self.fence = fence
        self.batcher = batcher
        self.clock = clock
        self.log = log
        self._fenced = fenced
        self._on_lease_lost = on_lease_lost
        self.state = SessionState.DISCONNECTED

    async def transition(
        self,
        to: SessionState,
        *,
        kind: str = "transition",
        cause: Cause | None = None,
        detail: str | None = None,
        tenant: dict[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        check_transition(self.state, to)
        frm = self.state
        self.state = to
        if frm is not to or kind != "transition":
            self.log.info(
                "session state",
                frm=frm.value,
                to=to.value,
                kind=kind,
                cause=cause.value if cause else None,
            )
        if kind == "qr" and frm is to:
            event = EventRecord(kind="qr_rotated", from_state=frm.value, to_state=to.value)
        else:
            event = EventRecord(
                kind=kind,
                from_state=frm.value,
                to_state=to.value,
                cause=cause.value if cause else None,
                detail=detail or None,
            )
        values = {"state": to.value, "worker_id": self.fence.worker_id, **fields}
        await self.write(values, event, tenant)

    async def record(self, kind: str, *, detail: str | None = None, **fields: Any) -> None:
        """A timeline event (and session fields) without a state change."""
        await self.write(fields, EventRecord(kind=kind, detail=detail), None)

    async def write(
        self, values: dict[str, Any], event: EventRecord | None, tenant: dict[str, Any] | None
    ) -> None:
        if self._fenced():
            return
        try:
            ok = await self.batcher.submit(
                store.update_session_fn(self.fence, values, event, self.clock.now(), tenant)
            )
        except (SQLAlchemyError, OSError) as err:
            # Database outage: keep running on the in-memory state; the supervisor
            # self-fences if it lasts. Not a lost lease.
            self.log.warning("persisting session state failed", error=str(err)[:200])
            return
        if not ok:
            self._on_lease_lost()
