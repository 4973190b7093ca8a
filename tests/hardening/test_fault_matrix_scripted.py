"""Fault matrix, scripted engine: the contract's causes the simulator cannot produce
(server_error, stream_error, engine_crash, banned, auth_failure) through the scripted
engine of tests/worker/fakes.py, a real SQLite database and a manual clock (no waiting):
state, cause, action, retry behaviour (backoff growing, max attempts → ERROR, or no
retries at all), the portal's wording and the "disconnected" line in the tenant's JSON
log file. Plus the combined faults that need exact timing: a drop reported during a
reconnect backoff, and a logout while QR_READY."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.hardening.conftest import Tally, tenant_log_lines
from tests.worker.conftest import BotHarness, harness
from tests.worker.test_bot import connected_bot, session, tenant, tenant_error, until, until_state
from wafleet.db.models import TenantLease
from wafleet.engines.base import ConnectionLost, LoggedOut
from wafleet.logging import configure_logging, shutdown_logging, tenant_writer
from wafleet.ops.explain import SessionFacts, explain
from wafleet.states import CAUSE_EXPLANATIONS, Cause, SessionState

__all__ = ["harness"]

TALLY = Tally("fault matrix (scripted engine)")
RETRYING = [Cause.SERVER_ERROR, Cause.STREAM_ERROR, Cause.ENGINE_CRASH]
OPERATOR = [Cause.BANNED, Cause.AUTH_FAILURE]


@pytest.fixture
def tenant_logs(tmp_path: Path) -> Iterator[Path]:
    """Per-tenant JSON log files under tmp_path/logs, as the worker process writes them."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging(level="INFO", fmt="json", logs_dir=tmp_path / "logs", stream=io.StringIO())
    try:
        yield tmp_path
    finally:
        shutdown_logging()
        structlog.reset_defaults()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def _disconnected_lines(data: Path) -> list[dict[str, Any]]:
    writer = tenant_writer()
    assert writer is not None
    writer.flush()
    return [line for line in tenant_log_lines(data, "acme") if line.get("event") == "disconnected"]


async def _wording(h: BotHarness, cause: Cause, words: tuple[str, ...]) -> str:
    what, todo = CAUSE_EXPLANATIONS[cause]
    assert what.strip() and todo.strip()
    ws, t = await session(h), await tenant(h)
    ex = explain("acme", t.status, SessionFacts.from_row(ws), error_message=t.error_message)
    assert ex.summary.strip() and ex.next_step.strip()
    assert any(w in ex.next_step.lower() for w in words), ex
    return ex.text()


@pytest.mark.parametrize("cause", RETRYING, ids=[c.value for c in RETRYING])
async def test_retrying_cause_backs_off_growing_then_tenant_error(
    harness: BotHarness, tenant_logs: Path, cause: Cause
) -> None:
    h = harness  # backoff 1 s, x2, max 8 s, 3 attempts, no jitter
    bot = await connected_bot(h)
    h.world.fail_next = [cause] * 10  # every reconnect fails the same way
    await h.world.engine.emit(ConnectionLost(cause=cause, detail="scripted"))  # type: ignore[union-attr]
    TALLY.faults += 1
    delays = []
    for delay in (1.0, 2.0, 4.0):  # growing
        await until(lambda d=delay: h.clock.pending_sleeps == [d], f"backoff {delay}")  # type: ignore[misc]
        ws = await session(h)
        assert (ws.state, ws.last_disconnect_cause, ws.last_disconnect_action) == (
            "DISCONNECTED",
            cause.value,
            "retrying",
        )
        assert ws.reconnect_active
        if delay == 1.0:
            text = await _wording(h, cause, ("nothing to do",))
            assert "reconnecting by itself" in text
        delays.append(delay)
        h.clock.advance(delay)
    await until(tenant_error(h), "tenant ERROR after max attempts")
    assert bot.parked
    t = await tenant(h)
    assert "Gave up after 3 reconnect attempts" in (t.error_message or "")
    assert cause.value in (t.error_message or "")
    await _wording(h, cause, ("restart",))
    connects = h.world.connects
    h.clock.advance(3600)
    await asyncio.sleep(0.05)
    assert h.world.connects == connects  # parked: no more attempts
    lines = _disconnected_lines(tenant_logs)
    assert len(lines) == 4 and all(line["cause"] == cause.value for line in lines)
    assert {line["action"] for line in lines} == {"retrying"}
    await bot.stop()
    TALLY.report()


@pytest.mark.parametrize("cause", OPERATOR, ids=[c.value for c in OPERATOR])
async def test_operator_cause_parks_with_error_and_never_retries(
    harness: BotHarness, tenant_logs: Path, cause: Cause
) -> None:
    h = harness
    bot = await connected_bot(h)
    connects = h.world.connects
    await h.world.engine.emit(ConnectionLost(cause=cause, detail="scripted"))  # type: ignore[union-attr]
    TALLY.faults += 1
    await until(tenant_error(h), "tenant ERROR")
    ws, t = await session(h), await tenant(h)
    assert ws.state == "DISCONNECTED"
    assert (ws.last_disconnect_cause, ws.last_disconnect_action) == (cause.value, "needs_operator")
    assert not ws.reconnect_active and ws.next_retry_at is None
    assert t.error_message and CAUSE_EXPLANATIONS[cause][0] in t.error_message
    words = ("support",) if cause is Cause.BANNED else ("relink", "re-link")
    await _wording(h, cause, words)
    assert any(w in CAUSE_EXPLANATIONS[cause][1].lower() for w in words)
    h.clock.advance(3600)
    await asyncio.sleep(0.05)
    assert h.world.connects == connects
    [line] = _disconnected_lines(tenant_logs)
    assert (line["cause"], line["action"], line["tenant"]) == (
        cause.value,
        "needs_operator",
        "acme",
    )
    await bot.stop()
    TALLY.report()


async def test_drop_reported_during_backoff_schedules_nothing_twice(
    harness: BotHarness, tenant_logs: Path
) -> None:
    """A late "connection lost" from the old connection while the bot already waits in
    backoff: ignored — one pending backoff, one connect when it ends, never two."""
    h = harness
    bot = await connected_bot(h)
    engine = h.world.engine
    assert engine is not None
    h.world.fail_next = [Cause.NETWORK]
    await engine.emit(ConnectionLost(cause=Cause.NETWORK, detail="drop 1"))
    await until(lambda: h.clock.pending_sleeps == [1.0], "first backoff")
    await engine.emit(ConnectionLost(cause=Cause.NETWORK, detail="drop 2 (late)"))
    await engine.emit(ConnectionLost(cause=Cause.STREAM_ERROR, detail="drop 3 (late)"))
    TALLY.faults += 3
    await asyncio.sleep(0.05)
    assert h.clock.pending_sleeps == [1.0]
    ws = await session(h)
    assert (ws.reconnect_attempt, ws.last_disconnect_cause) == (1, "network")
    connects = h.world.connects
    h.clock.advance(1.0)  # attempt 1 fails (scripted) → backoff 2 s
    await until(lambda: h.clock.pending_sleeps == [2.0], "second backoff")
    assert h.world.connects == connects + 1
    h.clock.advance(2.0)
    await until_state(h, SessionState.CONNECTED, "reconnected")
    assert h.world.max_in_flight == 1
    assert len(_disconnected_lines(tenant_logs)) == 2  # drop 1 + the failed attempt
    await bot.stop()
    TALLY.report()


async def test_logout_while_qr_ready_is_logged_out_without_retries(
    harness: BotHarness, tenant_logs: Path
) -> None:
    h = harness
    bot = h.bot()
    bot.start()
    await until_state(h, SessionState.QR_READY)
    engine = h.world.engine
    assert engine is not None
    connects = h.world.connects
    await engine.emit(LoggedOut(detail="unlinked while showing a QR code"))
    TALLY.faults += 1
    await until_state(h, SessionState.LOGGED_OUT)
    ws = await session(h)
    assert (ws.last_disconnect_cause, ws.last_disconnect_action) == ("logged_out", "needs_link")
    assert ws.last_qr is None and not ws.reconnect_active
    assert await h.creds.load() is None
    await _wording(h, Cause.LOGGED_OUT, ("relink",))
    h.clock.advance(3600)
    await asyncio.sleep(0.05)
    assert h.world.connects == connects
    [line] = _disconnected_lines(tenant_logs)
    assert line["cause"] == "logged_out"
    await bot.stop()
    TALLY.report()


async def test_lease_lost_stops_without_writing_or_reconnecting(
    harness: BotHarness, tenant_logs: Path
) -> None:
    """Another worker took the lease (epoch moved on): at its next write the bot sees the
    lease gone, lets go of WhatsApp, writes nothing more and never reconnects."""
    h = harness
    bot = await connected_bot(h)
    async with h.db.session() as s, s.begin():
        lease = await s.get(TenantLease, h.tenant_id)
        assert lease is not None
        lease.epoch = 2  # the new owner's epoch
    before = await session(h)
    connects = h.world.connects
    await h.world.engine.emit(ConnectionLost(cause=Cause.NETWORK, detail="drop"))  # type: ignore[union-attr]
    TALLY.faults += 1
    await until(lambda: bot.lease_lost and not bot.running, "the bot stopped on the lost lease")
    after = await session(h)
    assert (after.state, after.last_disconnect_cause, after.updated_at) == (
        before.state,
        before.last_disconnect_cause,
        before.updated_at,
    )  # fenced: not one write under the old epoch
    h.clock.advance(3600)
    await asyncio.sleep(0.05)
    assert h.world.connects == connects
    writer = tenant_writer()
    assert writer is not None
    writer.flush()
    events = [line.get("event") for line in tenant_log_lines(tenant_logs, "acme")]
    assert "lease lost: stopping without further writes" in events
    what, todo = CAUSE_EXPLANATIONS[Cause.LEASE_LOST]
    assert what.strip() and todo.strip().lower().startswith("nothing to do")
    await bot.stop()
    TALLY.report()
