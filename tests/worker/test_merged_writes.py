"""The batcher's merged writes (store.InsertInbound, CompleteInbound, MarkSent,
ApplyReceipts): many bots' writes in one transaction give each write exactly the result
it would have had alone — duplicates, lost leases and other tenants' rows included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from wafleet.db.engine import Database
from wafleet.db.migrate import upgrade
from wafleet.worker import store
from wafleet.worker.batcher import WriteBatcher

NOW = datetime(2026, 1, 1, tzinfo=UTC)
W = "worker-a"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[tuple[Database, WriteBatcher]]:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    await asyncio.to_thread(upgrade, url)
    database = Database(url)
    async with database.engine.begin() as conn:
        for t in (1, 2):
            await conn.execute(
                text(
                    "INSERT INTO tenants (id, slug, name, status, config, config_version, "
                    "created_at, updated_at) VALUES (:t, :s, 'T', 'ACTIVE', '{}', 0, :n, :n)"
                ),
                {"t": t, "s": f"t{t}", "n": NOW.replace(tzinfo=None)},
            )
            await conn.execute(
                text("INSERT INTO tenant_leases (tenant_id, worker_id, epoch) VALUES (:t, :w, 3)"),
                {"t": t, "w": W},
            )
            await conn.execute(
                text(
                    "INSERT INTO whatsapp_sessions (tenant_id, state, reconnect_active, "
                    "reconnect_attempt, updated_at) VALUES (:t, 'DISCONNECTED', 0, 0, :n)"
                ),
                {"t": t, "n": NOW.replace(tzinfo=None)},
            )
    batcher = WriteBatcher(database.engine)
    batcher.start()
    yield database, batcher
    await batcher.close()
    await database.close()


async def rows(db: Database) -> dict[tuple[int, str, str], dict[str, Any]]:
    async with db.engine.connect() as conn:
        res = await conn.execute(
            text("SELECT id, tenant_id, direction, wa_id, status, error FROM message_logs")
        )
        return {(r.tenant_id, r.direction, r.wa_id): dict(r._mapping) for r in res.all()}


def inbound(t: int, n: int) -> list[store.Inbound]:
    return [store.Inbound(t, f"m{i}", "+1555", "+1555", "hi", NOW) for i in range(n)]


async def test_merged_inserts_report_new_messages_to_their_own_write(db: Any) -> None:
    database, batcher = db
    # the same wa_id for two tenants: distinct messages; a re-sent batch: nothing new
    results = await asyncio.gather(
        batcher.submit(store.insert_inbound_fn(inbound(1, 3), NOW)),
        batcher.submit(store.insert_inbound_fn(inbound(2, 2), NOW)),
        batcher.submit(store.insert_inbound_fn(inbound(1, 1), NOW)),
    )
    assert [r.new for r in results] == [
        {(1, "m0"), (1, "m1"), (1, "m2")},
        {(2, "m0"), (2, "m1")},
        set(),
    ]
    assert all(r.completed == set() for r in results)  # nothing was decided
    assert len(await rows(database)) == 5


async def test_merged_completions_are_fenced_and_exactly_once(db: Any) -> None:
    database, batcher = db
    await asyncio.gather(
        batcher.submit(store.insert_inbound_fn(inbound(1, 3), NOW)),
        batcher.submit(store.insert_inbound_fn(inbound(2, 3), NOW)),
    )
    ok1, ok2, stale = store.Fence(W, 1, 3), store.Fence(W, 2, 3), store.Fence(W, 2, 2)

    def done(fence: store.Fence, wa: str, reply: str | None = "re", error: str | None = None):
        outcome = store.Outcome(fence.tenant_id, wa, "+1555", reply, error)
        return batcher.submit(store.complete_inbound_fn(fence, outcome, NOW))

    results = await asyncio.gather(
        done(ok1, "m0"),
        done(ok1, "m0"),  # a duplicate run in the same batch
        done(ok2, "m0"),  # the same id, another tenant
        done(stale, "m1"),  # an old epoch of tenant 2: fenced off
        done(ok1, "m1", reply=None),  # no rule answered: no reply row
        done(ok2, "m2", reply=None, error="webhook failed"),
    )
    assert results == [True, False, True, False, True, True]
    r = await rows(database)
    assert r[(1, "in", "m0")]["status"] == "PROCESSED"
    assert r[(2, "in", "m0")]["status"] == "PROCESSED"
    assert r[(2, "in", "m1")]["status"] == "RECEIVED"
    assert r[(1, "in", "m1")]["status"] == "PROCESSED"
    assert (r[(2, "in", "m2")]["status"], r[(2, "in", "m2")]["error"]) == (
        "FAILED",
        "webhook failed",
    )
    assert r[(1, "in", "m2")]["status"] == "RECEIVED"
    outbox = sorted(k for k in r if k[1] == "out")
    assert outbox == [(1, "out", "R-m0"), (2, "out", "R-m0")]


async def test_merged_sent_marks_and_receipts_touch_only_their_tenant(db: Any) -> None:
    database, batcher = db
    await asyncio.gather(
        batcher.submit(store.insert_inbound_fn(inbound(1, 2), NOW)),
        batcher.submit(store.insert_inbound_fn(inbound(2, 2), NOW)),
    )
    f1, f2 = store.Fence(W, 1, 3), store.Fence(W, 2, 3)
    for f in (f1, f2):
        for wa in ("m0", "m1"):
            o = store.Outcome(f.tenant_id, wa, "+1555", "re")
            assert await batcher.submit(store.complete_inbound_fn(f, o, NOW))
    r = await rows(database)
    id1 = r[(1, "out", "R-m0")]["id"]
    id2 = r[(2, "out", "R-m0")]["id"]
    other = r[(2, "out", "R-m1")]["id"]
    await asyncio.gather(
        batcher.submit(store.mark_sent_fn(f1, [id1, other], NOW)),  # `other` is tenant 2's
        batcher.submit(store.mark_sent_fn(store.Fence(W, 2, 1), [id2], NOW)),  # stale epoch
        batcher.submit(store.apply_receipts_fn(1, [("R-m1", "READ")], NOW)),
        batcher.submit(store.apply_receipts_fn(2, [("R-m9", "DELIVERED")], NOW)),  # unknown
    )
    r = await rows(database)
    assert r[(1, "out", "R-m0")]["status"] == "SENT"
    assert r[(2, "out", "R-m1")]["status"] == "PENDING"  # tenant 1's bot cannot mark it
    assert r[(2, "out", "R-m0")]["status"] == "PENDING"  # fenced
    assert r[(1, "out", "R-m1")]["status"] == "READ"
    # receipts never move a message backwards
    await batcher.submit(store.apply_receipts_fn(1, [("R-m1", "DELIVERED")], NOW))
    assert (await rows(database))[(1, "out", "R-m1")]["status"] == "READ"


async def test_merged_session_writes_keep_each_tenants_order_and_fence(db: Any) -> None:
    database, batcher = db
    f1, f2, stale = store.Fence(W, 1, 3), store.Fence(W, 2, 3), store.Fence(W, 2, 1)
    later = NOW.replace(hour=5)

    def write(fence: store.Fence, values: dict[str, Any], kind: str) -> Any:
        event = store.EventRecord(kind=kind, to_state=values["state"])
        return batcher.submit(store.update_session_fn(fence, values, event, NOW))

    results = await asyncio.gather(
        write(f1, {"state": "CONNECTING"}, "transition"),
        write(f2, {"state": "CONNECTING"}, "transition"),
        # tenant 1 again, other columns: must land after its first write
        write(f1, {"state": "CONNECTED", "connected_since": later}, "transition"),
        write(stale, {"state": "LOGGED_OUT"}, "logout"),  # an old epoch: nothing written
    )
    assert results == [True, True, True, False]
    async with database.engine.connect() as conn:
        states = dict(
            (await conn.execute(text("SELECT tenant_id, state FROM whatsapp_sessions"))).all()
        )
        since = (
            await conn.execute(
                text("SELECT connected_since FROM whatsapp_sessions WHERE tenant_id = 1")
            )
        ).scalar_one()
        events = (
            await conn.execute(
                text("SELECT tenant_id, to_state, epoch FROM connection_events ORDER BY id")
            )
        ).all()
    assert states == {1: "CONNECTED", 2: "CONNECTING"}
    assert str(since).startswith("2026-01-01 05:00:00")
    assert [tuple(e) for e in events] == [
        (1, "CONNECTING", 3),
        (2, "CONNECTING", 3),
        (1, "CONNECTED", 3),
    ]


async def test_decided_outcomes_commit_with_their_new_messages_under_the_fence(db: Any) -> None:
    database, batcher = db
    ok1, stale2 = store.Fence(W, 1, 3), store.Fence(W, 2, 2)

    def msg(t: int, wa: str, chat: str) -> store.Inbound:
        return store.Inbound(t, wa, chat, chat, "hi", NOW)

    def decide(fence: store.Fence, items: list[store.Inbound]) -> dict[str, store.Outcome]:
        return {
            m.wa_id: store.Outcome(fence.tenant_id, m.wa_id, m.chat, f"re {m.wa_id}") for m in items
        }

    await batcher.submit(store.insert_inbound_fn([msg(1, "a0", "+1")], NOW))  # stored before
    mine = [msg(1, "a0", "+1"), msg(1, "a1", "+1"), msg(1, "b0", "+2"), msg(1, "b1", "+2")]
    theirs = [msg(2, "c0", "+3")]
    results = await asyncio.gather(
        batcher.submit(store.insert_inbound_fn(mine, NOW, fence=ok1, decided=decide(ok1, mine))),
        batcher.submit(
            store.insert_inbound_fn(theirs, NOW, fence=stale2, decided=decide(stale2, theirs))
        ),
    )
    # a0 was not new: left as it was (RECEIVED, for whoever queued it), and a1 of its chat
    # must not be answered ahead of it; chat +2 is answered in this very transaction
    assert results[0].new == {(1, "a1"), (1, "b0"), (1, "b1")}
    assert results[0].completed == {(1, "b0"), (1, "b1")}
    # an old epoch stores the messages (they must not be lost) but decides nothing
    assert (results[1].new, results[1].completed) == ({(2, "c0")}, set())
    r = await rows(database)
    assert [r[(1, "in", wa)]["status"] for wa in ("a0", "a1", "b0", "b1")] == [
        "RECEIVED",
        "RECEIVED",
        "PROCESSED",
        "PROCESSED",
    ]
    assert r[(2, "in", "c0")]["status"] == "RECEIVED"
    assert sorted(k for k in r if k[1] == "out") == [(1, "out", "R-b0"), (1, "out", "R-b1")]


def test_decided_outcomes_without_a_fence_are_refused() -> None:
    outcome = store.Outcome(1, "m0", "+1555", "re")
    with pytest.raises(ValueError, match="fence"):
        store.insert_inbound_fn(inbound(1, 1), NOW, decided={"m0": outcome})
