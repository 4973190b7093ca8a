"""store.MarkSentByWaId — the SENT mark of replies the pipeline sends straight from
memory (known by their stable wa_id, not their row id): merged with other bots' marks,
it moves only its own tenant's PENDING rows, and only under the current lease."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.worker.test_merged_writes import NOW, W, db, inbound, rows
from wafleet.worker import store

__all__ = ["db"]  # the fixture, shared with test_merged_writes


async def test_marks_by_wa_id_touch_only_their_tenant_and_lease(db: Any) -> None:
    database, batcher = db
    await asyncio.gather(
        batcher.submit(store.insert_inbound_fn(inbound(1, 3), NOW)),
        batcher.submit(store.insert_inbound_fn(inbound(2, 2), NOW)),
    )
    f1, f2 = store.Fence(W, 1, 3), store.Fence(W, 2, 3)
    for f, n in ((f1, 3), (f2, 2)):
        for i in range(n):
            o = store.Outcome(f.tenant_id, f"m{i}", "+1555", "re")
            assert await batcher.submit(store.complete_inbound_fn(f, o, NOW))
    # one batch: tenant 1 marks two of its rows (and names one that is not its own),
    # tenant 2's bot on a stale epoch tries too, and a receipt already moved R-m2 on
    await asyncio.gather(
        batcher.submit(store.apply_receipts_fn(1, [("R-m2", "READ")], NOW)),
        batcher.submit(store.MarkSentByWaId(f1, ["R-m0", "R-m2", "R-x"], NOW)),
        batcher.submit(store.MarkSentByWaId(store.Fence(W, 2, 1), ["R-m0"], NOW)),
    )
    r = await rows(database)
    assert r[(1, "out", "R-m0")]["status"] == "SENT"
    assert r[(1, "out", "R-m1")]["status"] == "PENDING"  # not named
    assert r[(1, "out", "R-m2")]["status"] == "READ"  # never moved backwards
    assert r[(2, "out", "R-m0")]["status"] == "PENDING"  # stale epoch: fenced
    assert r[(2, "out", "R-m1")]["status"] == "PENDING"
    await batcher.submit(store.MarkSentByWaId(f2, ["R-m0", "R-m1"], NOW))
    r = await rows(database)
    assert [r[(2, "out", f"R-m{i}")]["status"] for i in range(2)] == ["SENT", "SENT"]
