"""Outbox: replies go out in windows whose round trips overlap, and each chat's replies
still arrive in order and end up SENT."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from tests.worker.conftest import BotHarness
from tests.worker.test_bot import until
from tests.worker.test_pipeline import echo_pipeline
from wafleet.db.models import MessageLog
from wafleet.worker import store
from wafleet.worker.outbox import RETRY_DELAY, SEND_WINDOW


async def test_outbox_sends_many_windows_in_each_chats_order(harness: BotHarness) -> None:
    h = harness
    pipe = await echo_pipeline(h)
    try:
        n = SEND_WINDOW * 3 + 5
        sent_in: dict[str, list[str]] = {"+1000": [], "+2000": []}
        for i in range(n):
            chat = "+1000" if i % 3 else "+2000"
            m = h.world.message(chat, f"n{i}")
            sent_in[chat].append(f"R-{m.id}")
            pipe.on_incoming(m)
        await until(lambda: len(h.world.sent) == n, "every reply")
        for chat, expected in sent_in.items():
            assert [s[2] for s in h.world.sent if s[0] == chat] == expected
        await until(lambda: pipe.outbox.marking == 0, "the SENT marks")
        async with h.db.session() as s:
            res = await s.execute(select(MessageLog.status).where(MessageLog.direction == "out"))
            assert sorted(res.scalars().all()) == ["SENT"] * n
    finally:
        await pipe.stop(drain_timeout=1)


async def test_a_failed_send_holds_back_the_rest_and_is_retried_in_order(
    harness: BotHarness,
) -> None:
    # Found in review: after a failed send the newer replies of the chat went out first.
    h = harness
    pipe = await echo_pipeline(h)
    try:
        m1, m2 = h.world.message("+1000", "one"), h.world.message("+1000", "two")
        h.world.fail_send_once.add(f"R-{m1.id}")
        pipe.on_incoming(m1)
        await until(lambda: RETRY_DELAY in h.clock.pending_sleeps, "the retry to be scheduled")
        pipe.on_incoming(m2)  # committed while the outbox waits: it must not overtake m1
        await until(lambda: pipe.received == 2, "the second message stored and answered")
        assert h.world.sent == []
        h.clock.advance(RETRY_DELAY)
        await until(lambda: len(h.world.sent) == 2, "both replies after the retry")
        assert [s[2] for s in h.world.sent] == [f"R-{m1.id}", f"R-{m2.id}"]
        assert h.world.send_calls.count(f"R-{m1.id}") == 2
    finally:
        await pipe.stop(drain_timeout=1)


async def test_a_failed_sent_mark_is_retried_without_sending_again(
    harness: BotHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found in review: a failed mark made the outbox send the (delivered) replies again.
    h = harness
    failing = {"on": True}
    real = store.MarkSentByWaId.run_many.__func__  # type: ignore[attr-defined]

    async def flaky(cls: Any, conn: Any, writes: Any) -> Any:
        if failing["on"]:
            raise OperationalError("UPDATE", {}, sqlite3.OperationalError("disk I/O error"))
        return await real(cls, conn, writes)

    monkeypatch.setattr(store.MarkSentByWaId, "run_many", classmethod(flaky))
    pipe = await echo_pipeline(h)
    try:
        m = h.world.message("+1000", "once")
        pipe.on_incoming(m)
        await until(lambda: 0.5 in h.clock.pending_sleeps, "the mark's retry to be scheduled")
        failing["on"] = False  # the database is back
        h.clock.advance(0.5)
        await until(lambda: pipe.outbox.marking == 0, "the mark to commit")
        async with h.db.session() as s:
            res = await s.execute(select(MessageLog.status).where(MessageLog.direction == "out"))
            assert res.scalars().all() == ["SENT"]
        assert h.world.send_calls == [f"R-{m.id}"]
    finally:
        await pipe.stop(drain_timeout=1)
