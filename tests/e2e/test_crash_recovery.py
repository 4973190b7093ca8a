"""Must-show 4: ``kill -9`` of the worker in the middle of a message stream, then a new
worker process: every inbound message processed, exactly one reply per inbound id at the
simulator, and the database rows agree."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict

import pytest

from tests.e2e.conftest import PHONE, Stack, eventually

pytestmark = pytest.mark.slow

TOTAL = 300
CHATS = [f"+1555600{i:04d}" for i in range(6)]
BATCH = 25


def test_kill9_mid_stream_then_new_worker_loses_and_duplicates_nothing(linked: Stack) -> None:
    sent: dict[str, list[str]] = defaultdict(list)
    ids: dict[str, str] = {}  # inbound id → text
    errors: list[BaseException] = []

    def stream() -> None:
        # a steady stream: 25 messages every 20 ms, across the crash and the restart
        try:
            for b in range(TOTAL // BATCH):
                batch = []
                for i in range(BATCH):
                    n = b * BATCH + i
                    chat = CHATS[n % len(CHATS)]
                    batch.append((chat, f"n{n:03d}"))
                for (chat, text), mid in zip(batch, linked.inbound_batch(batch), strict=True):
                    sent[chat].append(text)
                    ids[mid] = text
                time.sleep(0.02)
        except BaseException as err:  # surfaced by the main thread
            errors.append(err)

    feeder = threading.Thread(target=stream, name="e2e-feeder", daemon=True)
    feeder.start()
    linked.wait_outbound(TOTAL // 3, timeout=60)
    old = linked.worker
    assert old is not None
    old.kill9()
    at_kill = len(linked.outbound())
    assert at_kill < TOTAL, "the stream finished before the kill: nothing was tested"
    left = Counter(r["status"] for r in linked.messages("in") + linked.messages("out"))
    print(f"kill -9 after {at_kill} replies; rows then: {dict(left)}")

    linked.start_worker()
    feeder.join(60)
    assert not feeder.is_alive() and not errors, errors
    assert len(ids) == TOTAL

    out = linked.wait_outbound(TOTAL, timeout=90)
    linked.wait_state("CONNECTED", phone=PHONE)
    # exactly one reply per inbound id (replies carry the stable id R-<inbound id>)
    assert len(out) == TOTAL, len(out)
    counts = Counter(m["id"] for m in out)
    assert [k for k, c in counts.items() if c > 1] == []
    assert set(counts) == {f"R-{mid}" for mid in ids}
    for m in out:
        assert m["text"] == f"echo: {ids[m['id'][2:]]}"
    # in order within each chat, across the crash
    got: dict[str, list[str]] = defaultdict(list)
    for m in out:
        got[m["to"]].append(m["text"])
    for chat in CHATS:
        assert got[chat] == [f"echo: {t}" for t in sent[chat]], chat

    def settled() -> bool:
        ins, outs = linked.messages("in"), linked.messages("out")
        return (
            len(ins) == TOTAL
            and all(r["status"] == "PROCESSED" for r in ins)
            and len(outs) == TOTAL
            and all(r["status"] in ("SENT", "DELIVERED", "READ") for r in outs)
        )

    eventually(settled, timeout=20, what="every row settled", stack=linked)
    assert {r["wa_id"] for r in linked.messages("in")} == set(ids)
    assert {r["wa_id"] for r in linked.messages("out")} == set(counts)
    assert linked.stats()["inbound_pending"] == 0
    # the old worker never stopped cleanly; the new one holds the tenant
    s = linked.session()
    workers = linked.query("SELECT id, status FROM worker_processes ORDER BY started_at")
    assert len(workers) == 2
    assert s["worker_id"] == workers[1]["id"]
    assert workers[1]["status"] == "RUNNING"
