"""Must-show 3: inbound messages that arrive while the session is down, and outbox
messages queued through the control plane meanwhile, are all delivered after recovery,
none twice."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from tests.e2e.conftest import PHONE, Stack, eventually

pytestmark = pytest.mark.slow

CHATS = ["+15557000001", "+15557000002", "+15557000003"]


def test_messages_during_outage_are_all_delivered_once(linked: Stack) -> None:
    linked.start_control_plane()
    # one message before the outage, so we know the pipeline runs
    linked.inbound(CHATS[0], "before")
    assert [m["text"] for m in linked.wait_outbound(1)] == ["echo: before"]

    # outage: the open connection dropped, every new one refused
    linked.fault("refuse")
    linked.fault("drop")
    eventually(
        lambda: linked.session()["reconnect_attempt"] >= 2,
        timeout=20,
        what="the worker retrying against a refusing server",
        stack=linked,
    )

    inbound: dict[str, list[str]] = defaultdict(list)
    ids: list[str] = []
    for i in range(30):
        chat = CHATS[i % len(CHATS)]
        text = f"while down {i:02d}"
        inbound[chat].append(text)
        ids.append(linked.inbound(chat, text))
    queued: list[str] = []
    for i in range(10):
        resp = linked.cp(
            "POST",
            "/portal/tenant/current/messages",
            {"to": "+15558000000", "text": f"outbox {i:02d}"},
            expect=202,
        )
        assert resp["status"] == "PENDING"
        queued.append(resp["id"])

    # still down: nothing went out, the outbox rows wait as PENDING, inbound waits upstream
    s = linked.session()
    assert s["state"] != "CONNECTED", s
    assert len(linked.outbound()) == 1
    pending = {r["wa_id"]: r["status"] for r in linked.messages("out") if r["wa_id"] in queued}
    assert pending == dict.fromkeys(queued, "PENDING")
    assert linked.stats()["inbound_pending"] == 30
    status = linked.cp("GET", "/portal/tenant/current/status")
    assert status["messages"]["pending_out"] == 10
    assert status["reconnect"]["active"] is True
    assert status["last_disconnect"]["cause"] == "network"

    linked.clear_faults()
    linked.wait_state("CONNECTED", phone=PHONE, timeout=30)
    out = linked.wait_outbound(1 + 30 + 10, timeout=30)
    assert len(out) == 41
    assert len({m["id"] for m in out}) == 41
    assert not [t for t, c in Counter(m["text"] for m in out).items() if c > 1]
    # every outbox message went out under its own id, to its recipient
    by_id = {m["id"]: m for m in out}
    for i, wa_id in enumerate(queued):
        assert by_id[wa_id]["text"] == f"outbox {i:02d}"
        assert by_id[wa_id]["to"] == "+15558000000"
    # every inbound answered, in order per chat
    got: dict[str, list[str]] = defaultdict(list)
    for m in out[1:]:
        if m["to"] in CHATS:
            got[m["to"]].append(m["text"])
    for chat in CHATS:
        assert got[chat] == [f"echo: {t}" for t in inbound[chat]]

    def settled() -> bool:
        ins, outs = linked.messages("in"), linked.messages("out")
        return (
            len(ins) == 31
            and all(r["status"] == "PROCESSED" for r in ins)
            and len(outs) == 41
            and all(r["status"] in ("SENT", "DELIVERED", "READ") for r in outs)
        )

    eventually(settled, timeout=15, what="every row settled", stack=linked)
    in_ids = [r["wa_id"] for r in linked.messages("in")]
    assert len(set(in_ids)) == 31 and set(ids) <= set(in_ids)
    assert linked.stats()["inbound_pending"] == 0
    assert linked.cp("GET", "/portal/tenant/current/status")["messages"]["pending_out"] == 0
