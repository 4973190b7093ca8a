"""TenantPipeline: rule answers commit with their message (one transaction, no chat
queue), yet a chat's order holds when an older message of it waits for a webhook."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from tests.worker.conftest import WORKER, BotHarness
from tests.worker.test_bot import until
from wafleet.engines.base import EngineContext, EngineEvent
from wafleet.worker import store
from wafleet.worker.pipeline import TenantPipeline
from wafleet.worker.rules import BotConfig
from wafleet.worker.store import Fence, Inbound
from wafleet.worker.webhook import WebhookMessage


class GatedWebhooks:
    """Answers every webhook call once the test opens the gate (a fake, not a mock)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls: list[str] = []

    async def deliver(self, hook: Any, msg: WebhookMessage) -> str | None:
        self.calls.append(msg.id)
        await self.gate.wait()
        return f"hook: {msg.text}"


async def started_pipeline(h: BotHarness, webhooks: Any, config: BotConfig) -> TenantPipeline:
    pipe = TenantPipeline(
        slug="acme",
        fence=Fence(WORKER, h.tenant_id, 1),
        batcher=h.deps.batcher,
        clock=h.clock,
        webhooks=webhooks,
        chat_queue_max=10,
        on_lease_lost=lambda: None,
    )
    pipe.set_config(config)
    await h.creds.save(b"+15550001")
    engine = h.world.factory()(_ctx(h))
    await engine.connect()
    pipe.ack_engine = engine
    pipe.start()
    pipe.connected(engine)
    await until(lambda: not pipe._holding, "the start-up sweep")
    return pipe


async def echo_pipeline(h: BotHarness) -> TenantPipeline:
    """A started pipeline whose one rule answers everything: ``echo: <text>``."""
    config = BotConfig.model_validate({"rules": [{"match": "any", "reply": "echo: {text}"}]})
    return await started_pipeline(h, GatedWebhooks(), config)


def _ctx(h: BotHarness) -> EngineContext:
    async def sink(ev: EngineEvent) -> None:
        del ev  # the pipeline is driven directly here; the bot's events don't matter

    return EngineContext("acme", h.deps.sessions_dir, h.creds, sink)


async def test_rule_answers_skip_the_chat_queue_but_wait_behind_a_webhook_of_their_chat(
    harness: BotHarness,
) -> None:
    h = harness
    hooks = GatedWebhooks()
    config = BotConfig.model_validate(
        {
            "rules": [{"match": "keyword", "pattern": "hours", "reply": "9 to 5"}],
            "webhook": {"url": "http://127.0.0.1:9/hook", "secret": "s"},
        }
    )
    pipe = await started_pipeline(h, hooks, config)
    try:
        first = h.world.message("+1000", "a question for the hook")
        behind = h.world.message("+1000", "hours?")  # answerable, but its chat waits
        other = h.world.message("+2000", "hours?")  # another chat: answered at once
        for m in (first, behind, other):
            pipe.on_incoming(m)
        await until(lambda: len(h.world.sent) == 1, "the other chat's rule answer")
        assert h.world.sent[0] == ("+2000", "9 to 5", f"R-{other.id}")
        assert hooks.calls == [first.id]
        # only the chat waiting for its webhook went through the chat queue
        assert pipe.queues.metrics.enqueued == 2
        hooks.gate.set()
        await until(lambda: len(h.world.sent) == 3, "the webhook chat's replies")
        assert [s[2] for s in h.world.sent[1:]] == [f"R-{first.id}", f"R-{behind.id}"]
        assert {first.id, behind.id, other.id} <= h.world.acked
    finally:
        await pipe.stop(drain_timeout=1)


async def test_redelivered_stored_message_is_answered_before_a_newer_one_of_its_chat(
    harness: BotHarness,
) -> None:
    # Found in review: the newer message was decided early and answered ahead of the
    # redelivered one, which an earlier bot of the tenant had stored (its ack failed).
    h = harness
    pipe = await echo_pipeline(h)
    try:
        m1 = h.world.message("+1000", "first")
        m2 = h.world.message("+1000", "second")
        other = h.world.message("+2000", "elsewhere")
        stored_before = Inbound(h.tenant_id, m1.id, m1.chat, m1.sender, m1.text, m1.at)
        await h.deps.batcher.submit(store.insert_inbound_fn([stored_before], h.clock.now()))
        for m in (m1, m2, other):  # one batch: the redelivery, a newer one, another chat
            pipe.on_incoming(m)
        await until(lambda: len(h.world.sent) == 3, "every reply")
        chat_1000 = [s[2] for s in h.world.sent if s[0] == "+1000"]
        assert chat_1000 == [f"R-{m1.id}", f"R-{m2.id}"]
    finally:
        await pipe.stop(drain_timeout=1)


async def test_a_message_whose_processing_failed_is_retried_before_newer_ones_of_its_chat(
    harness: BotHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found in review: it stayed RECEIVED until a restart, and newer messages of its chat
    # (answered by rules at once) went out ahead of it.
    h = harness
    hooks = GatedWebhooks()
    hooks.gate.set()
    config = BotConfig.model_validate(
        {
            "rules": [{"match": "keyword", "pattern": "hours", "reply": "9 to 5"}],
            "webhook": {"url": "http://127.0.0.1:9/hook", "secret": "s"},
        }
    )
    real = store.complete_inbound_fn
    failures: list[str] = []

    def flaky(fence: Any, outcome: Any, now: Any) -> Any:
        if not failures:
            failures.append(outcome.inbound_wa_id)
            raise OperationalError("UPDATE", {}, sqlite3.OperationalError("disk I/O error"))
        return real(fence, outcome, now)

    monkeypatch.setattr(store, "complete_inbound_fn", flaky)
    pipe = await started_pipeline(h, hooks, config)
    try:
        first = h.world.message("+1000", "a question for the hook")
        pipe.on_incoming(first)
        await until(lambda: failures == [first.id], "the failed completion")
        newer = h.world.message("+1000", "hours?")
        pipe.on_incoming(newer)
        await until(lambda: len(h.world.sent) == 2, "both replies")
        assert [s[2] for s in h.world.sent] == [f"R-{first.id}", f"R-{newer.id}"]
    finally:
        await pipe.stop(drain_timeout=1)
