"""Outbox: replies go out in windows whose round trips overlap, and each chat's replies
still arrive in order and end up SENT."""

from __future__ import annotations

from sqlalchemy import select

from tests.worker.conftest import BotHarness
from tests.worker.test_bot import until
from tests.worker.test_pipeline import GatedWebhooks, started_pipeline
from wafleet.db.models import MessageLog
from wafleet.worker.outbox import SEND_WINDOW
from wafleet.worker.rules import BotConfig


async def test_outbox_sends_many_windows_in_each_chats_order(harness: BotHarness) -> None:
    h = harness
    config = BotConfig.model_validate({"rules": [{"match": "any", "reply": "echo: {text}"}]})
    pipe = await started_pipeline(h, GatedWebhooks(), config)
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
