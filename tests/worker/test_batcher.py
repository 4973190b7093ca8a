"""WriteBatcher: writes queued together share one transaction and each gets its own
result after COMMIT; one bad write does not fail its batch; urgent writes go first; lazy
writes wait to ride with a later flush but are never left behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from wafleet.worker.batcher import BatcherClosed, WriteBatcher


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")
    async with eng.begin() as conn:
        await conn.execute(text("CREATE TABLE log (n INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
    yield eng
    await eng.dispose()


def put(value: str) -> Callable[[AsyncConnection], Any]:
    async def write(conn: AsyncConnection) -> str:
        await conn.execute(text("INSERT INTO log (v) VALUES (:v)"), {"v": value})
        return value

    return write


async def stored(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT v FROM log ORDER BY n"))).scalars())


async def test_writes_queued_together_share_one_commit(engine: AsyncEngine) -> None:
    batcher = WriteBatcher(engine)
    futs = [batcher.submit_nowait(put(f"w{i}")) for i in range(20)]
    batcher.start()
    assert await asyncio.gather(*futs) == [f"w{i}" for i in range(20)]
    assert batcher.flushes == 1
    assert await stored(engine) == [f"w{i}" for i in range(20)]
    await batcher.close()


async def test_a_failing_write_does_not_fail_its_batch(engine: AsyncEngine) -> None:
    async def bad(conn: AsyncConnection) -> None:
        await conn.execute(text("INSERT INTO log (v) VALUES (NULL)"))  # NOT NULL

    batcher = WriteBatcher(engine)
    futs = [
        batcher.submit_nowait(put("a")),
        batcher.submit_nowait(bad),
        batcher.submit_nowait(put("b")),
    ]
    batcher.start()
    results = await asyncio.gather(*futs, return_exceptions=True)
    assert results[0] == "a" and results[2] == "b"
    assert isinstance(results[1], Exception)
    assert await stored(engine) == ["a", "b"]
    await batcher.close()


async def test_urgent_writes_go_ahead_of_the_backlog(engine: AsyncEngine) -> None:
    batcher = WriteBatcher(engine)
    futs = [batcher.submit_nowait(put(f"w{i}")) for i in range(3)]
    futs.append(batcher.submit_nowait(put("heartbeat"), urgent=True))
    batcher.start()
    await asyncio.gather(*futs)
    assert await stored(engine) == ["heartbeat", "w0", "w1", "w2"]
    await batcher.close()


async def test_lazy_writes_wait_for_their_delay_then_ride_along(engine: AsyncEngine) -> None:
    batcher = WriteBatcher(engine, lazy_delay=3600)
    batcher.start()
    lazy = batcher.submit_nowait(put("mark"), lazy=True)
    assert await batcher.submit(put("message")) == "message"
    assert not lazy.done()  # not due: it did not make the message's transaction longer
    assert batcher.backlog == 1
    await batcher.close()  # closing flushes what is queued, lazy writes included
    assert lazy.result() == "mark"
    assert await stored(engine) == ["message", "mark"]


async def test_a_due_lazy_write_is_flushed_without_other_work(engine: AsyncEngine) -> None:
    batcher = WriteBatcher(engine, lazy_delay=0.01)
    batcher.start()
    assert await asyncio.wait_for(batcher.submit_nowait(put("receipt"), lazy=True), 10) == "receipt"
    await batcher.close()
    with pytest.raises(BatcherClosed):
        batcher.submit_nowait(put("late"), lazy=True)


async def test_due_lazy_writes_are_not_starved_by_a_backlog(engine: AsyncEngine) -> None:
    # Found in review: due lazy writes only filled what room the backlog left.
    batcher = WriteBatcher(engine, max_batch=5, lazy_delay=0)
    lazy = batcher.submit_nowait(put("mark"), lazy=True)
    backlog = [batcher.submit_nowait(put(f"w{i}")) for i in range(20)]
    batcher.start()
    await asyncio.gather(lazy, *backlog)
    assert (await stored(engine))[0] == "mark"  # in the first batch, ahead of the backlog
    await batcher.close()


async def test_a_sqlite_batch_holds_the_write_lock_from_its_start(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    # A lease read at the start of a batch must still hold when the rows it fences are
    # written: no other connection may write in between (BEGIN IMMEDIATE).
    other = create_async_engine(
        f"sqlite+aiosqlite:///{tmp_path / 'b.db'}", connect_args={"timeout": 0}
    )
    outcome: list[str] = []

    async def read_then_write(conn: AsyncConnection) -> None:
        await conn.execute(text("SELECT count(*) FROM log"))  # the "lease check"
        try:
            async with other.begin() as intruder:
                await intruder.execute(text("INSERT INTO log (v) VALUES ('intruder')"))
            outcome.append("intruder wrote")
        except OperationalError as err:
            outcome.append("locked" if "locked" in str(err) else str(err))
        await conn.execute(text("INSERT INTO log (v) VALUES ('fenced')"))

    batcher = WriteBatcher(engine)
    batcher.start()
    await batcher.submit(read_then_write)
    await batcher.close()
    await other.dispose()
    assert outcome == ["locked"]
    assert await stored(engine) == ["fenced"]
