"""Must-show 1: link by QR, then 500 inbound messages over 10 chats are each answered
exactly once, in order per chat, with 500 + 500 rows in ``message_logs``."""

from __future__ import annotations

import time
from collections import Counter, defaultdict

import pytest

from tests.e2e.conftest import PHONE, SLUG, Stack, eventually

pytestmark = pytest.mark.slow

CHATS = [f"+1555900{i:04d}" for i in range(10)]


def test_link_then_500_messages_answered_once_in_order(stack: Stack) -> None:
    stack.start_worker()
    stack.start_control_plane()
    qr = stack.wait_qr()
    assert qr.startswith("2@")
    stack.scan(qr)
    row = stack.wait_state("CONNECTED", phone=PHONE)
    assert row["last_qr"] is None
    assert row["connected_since"] is not None

    # 500 messages, round-robin over 10 chats, in 5 batches of 100
    sent: dict[str, list[str]] = defaultdict(list)  # chat → texts in send order
    ids: list[str] = []
    for b in range(5):
        batch = []
        for i in range(100):
            n = b * 100 + i
            chat = CHATS[n % len(CHATS)]
            text = f"msg {n:03d} from {chat}"
            batch.append((chat, text))
            sent[chat].append(text)
        ids += stack.inbound_batch(batch)
    assert len(set(ids)) == 500

    out = stack.wait_outbound(500, timeout=90)
    assert len(out) == 500, len(out)
    # exactly once: no duplicate ids, no duplicate texts
    assert len({m["id"] for m in out}) == 500
    assert not [t for t, c in Counter(m["text"] for m in out).items() if c > 1]
    # in order within each chat, addressed to the chat's contact
    got: dict[str, list[str]] = defaultdict(list)
    for m in out:
        got[m["to"]].append(m["text"])
    assert set(got) == set(CHATS)
    for chat in CHATS:
        assert got[chat] == [f"echo: {t}" for t in sent[chat]], chat

    # the database agrees: 500 in PROCESSED, 500 out SENT or later, the inbound ids
    def rows_settled() -> bool:
        ins, outs = stack.messages("in"), stack.messages("out")
        return (
            len(ins) == 500
            and all(r["status"] == "PROCESSED" for r in ins)
            and len(outs) == 500
            and all(r["status"] in ("SENT", "DELIVERED", "READ") for r in outs)
        )

    eventually(rows_settled, timeout=20, what="500 + 500 settled message rows", stack=stack)
    ins, outs = stack.messages("in"), stack.messages("out")
    assert sorted(r["wa_id"] for r in ins) == sorted(ids)
    assert sorted(r["wa_id"] for r in outs) == sorted(m["id"] for m in out)
    # nothing left for the simulator to redeliver
    assert stack.stats()["inbound_pending"] == 0

    # the control plane reports the same
    status = stack.cp("GET", "/portal/tenant/current/status")
    assert status["tenant"]["slug"] == SLUG
    assert status["session"]["state"] == "CONNECTED"
    assert status["session"]["phone"] == PHONE
    assert status["messages"]["pending_out"] == 0
    assert status["messages"]["in_24h"] == 500
    assert status["messages"]["out_24h"] == 500
    # ... and so does the CLI
    st = stack.status_json()
    assert st["session_state"] == "CONNECTED"
    assert st["worker"]["status"] == "RUNNING"


def test_one_chat_beyond_its_queue_bound_stays_in_order(linked: Stack) -> None:
    """More messages in one chat than its queue holds (WAFLEET_CHAT_QUEUE_MAX=100): the
    overflow is deferred to the database, and messages arriving meanwhile must queue
    behind it, not overtake it (regression: they did)."""
    chat = "+15551230000"
    texts = [f"m{i:03d}" for i in range(300)]
    linked.inbound_batch([(chat, t) for t in texts[:200]])
    for b in range(20):  # a trickle while the overflow still waits
        linked.inbound_batch([(chat, t) for t in texts[200 + 5 * b : 205 + 5 * b]])
        time.sleep(0.05)
    out = linked.wait_outbound(300, timeout=90)
    assert [m["text"] for m in out] == [f"echo: {t}" for t in texts]
    assert len({m["id"] for m in out}) == 300
    eventually(
        lambda: [r["status"] for r in linked.messages("in")] == ["PROCESSED"] * 300,
        timeout=15,
        what="300 inbound PROCESSED",
        stack=linked,
    )
