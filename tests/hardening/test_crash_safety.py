"""Crash safety: ``kill -9`` of the worker, of the control plane and of the whole
``wafleet up`` at random points (seeded RNG, 3 kills each) of a continuous message
stream — inbound messages injected at the simulator, outbox messages POSTed to the
control plane — each killed process restarted at once. After recovery:

* every accepted inbound message (id returned by the simulator) is answered exactly
  once (one reply ``R-<id>`` at the simulator, in order per chat) and its row PROCESSED;
* every accepted outbound message (202 from ``POST /portal/tenant/current/messages``)
  is sent exactly once under its id;
* no text reaches the simulator twice (a POST cut by the kill that was stored anyway is
  sent once too, but it was never accepted, so it is counted apart as "unconfirmed").

The simulator plays WhatsApp: it is never killed (``wafleet up`` runs without
``--simulator`` and points its engine at a separate simulator process, as a real
deployment points at WhatsApp, so the record of what was sent survives the kill).
Sizes: messages every 0.1 s (4 inbound over 6 chats + 1 outbox) for the whole run.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import OWNER, PHONE, PORTAL_KEY, Stack, eventually
from tests.hardening.conftest import Tally, count_dupes, new_stack, stop_all
from tests.support.procs import Proc, free_port, wait_http_ok

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

KILLS = 3
CHATS = [f"+1555700{i:04d}" for i in range(6)]
TICK = 0.1
IN_PER_TICK = 4


@dataclass
class Workload:
    """Feeds inbound (simulator) and outbox (control plane) messages until stopped."""

    st: Stack
    post_timeout: float = 5.0
    sent_in: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    in_ids: dict[str, str] = field(default_factory=dict)  # inbound id → text
    accepted_out: dict[str, str] = field(default_factory=dict)  # wa_id → text
    refused_out: list[str] = field(default_factory=list)  # texts whose POST got no 202
    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for name, fn in (("feed-in", self._feed_in), ("feed-out", self._feed_out)):
            t = threading.Thread(target=self._guard(fn), name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def finish(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(30)
            assert not t.is_alive(), t.name
        assert not self.errors, self.errors

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as err:  # surfaced by finish()
                self.errors.append(err)

        return run

    def _feed_in(self) -> None:
        n = 0
        while not self.stop.is_set():
            batch = []
            for _ in range(IN_PER_TICK):
                chat = CHATS[n % len(CHATS)]
                batch.append((chat, f"in{n:05d}"))
                n += 1
            for (chat, text), mid in zip(batch, self.st.inbound_batch(batch), strict=True):
                self.sent_in[chat].append(text)
                self.in_ids[mid] = text
            time.sleep(TICK)

    def _feed_out(self) -> None:
        headers = {"x-portal-key": PORTAL_KEY, "x-user-email": OWNER}
        n = 0
        with httpx.Client(timeout=self.post_timeout, headers=headers) as client:
            while not self.stop.is_set():
                text = f"out{n:05d}"
                n += 1
                try:
                    r = client.post(
                        f"{self.st.cp_url}/portal/tenant/current/messages",
                        json={"to": "+15558000002", "text": text},
                    )
                except httpx.TransportError:
                    self.refused_out.append(text)  # control plane down or killed mid-request
                else:
                    if r.status_code == 202:
                        self.accepted_out[r.json()["id"]] = text
                    else:
                        assert r.status_code >= 500, (r.status_code, r.text)
                        self.refused_out.append(text)
                time.sleep(TICK)

    def progress(self) -> int:
        return int(self.st.stats()["outbound"])


def verify(st: Stack, w: Workload, tally: Tally) -> None:
    """Wait for everything accepted to go out, then count lost and duplicated."""
    tally.inbound, tally.outbound = len(w.in_ids), len(w.accepted_out)
    want_replies = {f"R-{mid}" for mid in w.in_ids}
    want = want_replies | set(w.accepted_out)

    def all_out() -> list[dict[str, Any]] | None:
        out = st.outbound()
        return out if want <= {m["id"] for m in out} else None

    try:
        out = eventually(all_out, timeout=90, what="every accepted message sent")
    except AssertionError:
        out = st.outbound()
    got_ids = [m["id"] for m in out]
    tally.lost = len(want - set(got_ids))
    texts = [m["text"] for m in out]
    tally.duplicated = count_dupes(got_ids) + count_dupes(texts)
    unconfirmed = [t for t in w.refused_out if t in set(texts)]
    tally.extra["posts_without_202"] = len(w.refused_out)
    tally.extra["of_which_sent_once"] = len(unconfirmed)
    tally.report()
    assert tally.lost == 0, (sorted(want - set(got_ids))[:10], st.logs())
    assert tally.duplicated == 0, [t for t, c in Counter(texts).items() if c > 1][:10]

    by_id = {m["id"]: m for m in out}
    for mid, text in w.in_ids.items():
        assert by_id[f"R-{mid}"]["text"] == f"echo: {text}"
    for wa_id, text in w.accepted_out.items():
        assert by_id[wa_id]["text"] == text
    # in order within each chat, across the kills
    got: dict[str, list[str]] = defaultdict(list)
    for m in out:
        if m["to"] in CHATS:
            got[m["to"]].append(m["text"])
    for chat in CHATS:
        assert got[chat] == [f"echo: {t}" for t in w.sent_in[chat]], chat

    def settled() -> bool:
        ins = st.messages("in")
        outs = st.messages("out")
        return (
            {r["wa_id"] for r in ins} == set(w.in_ids)
            and all(r["status"] == "PROCESSED" for r in ins)
            and {r["wa_id"] for r in outs} >= want
            and all(r["status"] in ("SENT", "DELIVERED", "READ") for r in outs)
        )

    eventually(settled, timeout=30, what="every row settled", stack=st)
    assert st.stats()["inbound_pending"] == 0
    assert st.stats()["max_concurrent"].get(PHONE, 0) <= 1


def kill_rounds(
    st: Stack,
    w: Workload,
    tally: Tally,
    rng: random.Random,
    kill_and_restart: Callable[[], None],
) -> None:
    """KILLS times: let the stream run a random while (and make progress), kill -9, restart."""
    for _ in range(KILLS):
        start = w.progress()
        eventually(
            lambda s=start: w.progress() >= s + 5,  # type: ignore[misc]
            timeout=60,
            what="the stream moving before the next kill",
            stack=st,
        )
        time.sleep(rng.uniform(0.2, 2.0))
        kill_and_restart()
        tally.kills += 1
    # let the last restarted process work on the live stream for a while
    start = w.progress()
    eventually(
        lambda: w.progress() >= start + 20, timeout=60, what="the stream after the last kill"
    )
    w.finish()


@pytest.fixture
def crash_stack(seeded_data_dir: Path, tmp_path: Path) -> Iterator[Stack]:
    st = new_stack(seeded_data_dir, tmp_path)
    try:
        st.start_simulator()
        yield st
    finally:
        stop_all(st)


@pytest.mark.parametrize("seed", [7])
def test_kill9_worker_at_random_points(crash_stack: Stack, seed: int) -> None:
    st, rng, tally = crash_stack, random.Random(seed), Tally(f"kill -9 worker (seed {seed})")
    st.start_control_plane()
    st.start_worker()
    st.link()
    w = Workload(st)
    w.start()

    def again() -> None:
        assert st.worker is not None
        st.worker.kill9()
        time.sleep(rng.uniform(0.0, 1.0))
        st.start_worker()

    kill_rounds(st, w, tally, rng, again)
    verify(st, w, tally)
    workers = st.query("SELECT status FROM worker_processes ORDER BY started_at")
    assert len(workers) == KILLS + 1 and workers[-1]["status"] == "RUNNING"


@pytest.mark.parametrize("seed", [11])
def test_kill9_control_plane_at_random_points(crash_stack: Stack, seed: int) -> None:
    st, rng, tally = crash_stack, random.Random(seed), Tally(f"kill -9 control plane (seed {seed})")
    cp = [st.start_control_plane()]
    st.start_worker()
    st.link()
    w = Workload(st)
    w.start()

    def again() -> None:
        cp[0].kill9()
        time.sleep(rng.uniform(0.0, 1.0))
        cp[0] = st.start_control_plane()

    kill_rounds(st, w, tally, rng, again)
    verify(st, w, tally)
    assert st.worker is not None and st.worker.alive()
    assert len(st.query("SELECT id FROM worker_processes")) == 1  # the worker never noticed


@pytest.mark.parametrize("seed", [23])
def test_kill9_whole_up_at_random_points(crash_stack: Stack, seed: int) -> None:
    st, rng, tally = crash_stack, random.Random(seed), Tally(f"kill -9 wafleet up (seed {seed})")
    portal = free_port()
    args = ["up", "--port", str(portal), "--control-plane-port", str(st.cp_port)]
    ups: list[Proc] = []

    def start_up() -> None:
        ups.append(st.start(f"up-{len(ups) + 1}", args))
        wait_http_ok(f"{st.cp_url}/healthz", timeout=30)

    start_up()
    st.link()
    w = Workload(st)
    w.start()

    def again() -> None:
        ups[-1].kill9()
        time.sleep(rng.uniform(0.0, 1.0))
        start_up()

    kill_rounds(st, w, tally, rng, again)
    verify(st, w, tally)
    assert ups[-1].alive()
    workers = st.query("SELECT status FROM worker_processes ORDER BY started_at")
    assert len(workers) == KILLS + 1 and workers[-1]["status"] == "RUNNING"
