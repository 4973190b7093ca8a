"""The two `Engine.send_many` implementations over ``send_text``: in order and stopping
at the first failure (engines whose sends queue anyway), or overlapped."""

from __future__ import annotations

import pytest

from wafleet.engines.base import (
    EngineError,
    NotAttempted,
    OutgoingText,
    send_concurrently,
    send_in_order,
)

MESSAGES = [OutgoingText("+1", f"t{i}", f"id-{i}") for i in range(4)]


class Wire:
    def __init__(self, fail: set[str]) -> None:
        self.fail = fail
        self.order: list[str] = []

    async def send_text(self, to: str, text: str, message_id: str) -> None:
        self.order.append(message_id)
        if message_id in self.fail:
            raise EngineError(f"refused {message_id}")


async def test_in_order_stops_at_the_first_failure() -> None:
    wire = Wire({"id-1"})
    results = await send_in_order(wire.send_text, MESSAGES)
    assert wire.order == ["id-0", "id-1"]  # nothing after the failure was tried
    assert results[0] is None
    assert isinstance(results[1], EngineError) and not isinstance(results[1], NotAttempted)
    assert [type(r) for r in results[2:]] == [NotAttempted, NotAttempted]


async def test_concurrently_keeps_call_order_and_reports_each_result() -> None:
    wire = Wire({"id-2"})
    results = await send_concurrently(wire.send_text, MESSAGES)
    assert wire.order == ["id-0", "id-1", "id-2", "id-3"]
    assert [r is None for r in results] == [True, True, False, True]


async def test_a_bug_is_not_reported_as_a_send_failure() -> None:
    async def broken(to: str, text: str, message_id: str) -> None:
        raise KeyError(message_id)

    with pytest.raises(KeyError):
        await send_concurrently(broken, MESSAGES[:1])
    with pytest.raises(KeyError):
        await send_in_order(broken, MESSAGES[:1])
