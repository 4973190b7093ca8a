"""Database outages under a live message stream: no crash loop, nothing lost, nothing
twice, recovery without help.

* SQLite: this test process holds ``BEGIN EXCLUSIVE`` on the database file for 10 s (no
  other process can write) while inbound and outbox messages keep coming.
* PostgreSQL: the server is stopped for 15 s under two workers sharing four linked
  tenants (the scale fixtures of tests/scale), while messages keep coming.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import PHONE, Stack, eventually
from tests.hardening.conftest import Tally, count_dupes, new_stack, stop_all
from tests.hardening.test_crash_safety import Workload, verify
from tests.scale.conftest import Fleet, fleet_factory, phone_of
from tests.support.procs import Proc, free_port, wait_http_ok, wait_until

__all__ = ["fleet_factory"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SQLITE_LOCK_S = 10.0
PG_DOWN_S = 15.0


def test_sqlite_locked_by_another_writer_for_10s(seeded_data_dir: Path, tmp_path: Path) -> None:
    tally = Tally("SQLite locked 10 s (BEGIN EXCLUSIVE)")
    st: Stack = new_stack(seeded_data_dir, tmp_path)
    try:
        st.start_simulator()
        st.start_control_plane()
        worker = st.start_worker()
        st.link()
        # a POST waits for the lock (busy timeout 30 s): give it longer than the lock
        w = Workload(st, post_timeout=SQLITE_LOCK_S + 10)
        w.start()
        eventually(lambda: w.progress() >= 20, timeout=30, what="the stream running", stack=st)

        locker = sqlite3.connect(st.db_path, timeout=30, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            tally.faults += 1
            t0 = time.monotonic()
            at_lock = w.progress()
            # the worker keeps its process (no crash loop) while nobody can write, and
            # lets go of WhatsApp before its lease (3 s) could expire: self-fencing
            fenced_after: float | None = None
            while time.monotonic() - t0 < SQLITE_LOCK_S:
                assert worker.alive(), worker.output()[-3000:]
                if fenced_after is None and st.stats()["connections"].get(PHONE, 0) == 0:
                    fenced_after = time.monotonic() - t0
                time.sleep(0.25)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        during = w.progress() - at_lock
        # ... and recovers by itself: connected, answering, the stream flowing again
        st.wait_state("CONNECTED", phone=PHONE, timeout=40)
        start = w.progress()
        eventually(lambda: w.progress() >= start + 20, timeout=40, what="flowing again", stack=st)
        w.finish()
        tally.extra["sent_while_locked"] = during
        tally.extra["disconnected_after_s"] = fenced_after and round(fenced_after, 1)
        assert fenced_after is not None, "still connected to WhatsApp after 10 s without a lease"
        verify(st, w, tally)
        assert worker.alive()
        assert len(st.query("SELECT id FROM worker_processes")) == 1
        assert st.session()["tenant_status"] == "ACTIVE"
    finally:
        stop_all(st)


# ---------------------------------------------------------------- PostgreSQL

TENANTS = 4
CONTACTS = ["+15559100001", "+15559100002"]


class FleetLoad:
    """Inbound to every tenant's phone (simulator) and outbox POSTs (control plane)."""

    def __init__(self, fleet: Fleet, cp_url: str, seed: int) -> None:
        self.fleet = fleet
        self.cp_url = cp_url
        self.rng = random.Random(seed)
        self.in_ids: dict[str, tuple[str, str, str]] = {}  # id → (phone, contact, text)
        self.accepted: dict[str, str] = {}  # wa_id → text
        self.refused: list[str] = []
        self.codes: Counter[str] = Counter()
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._guard(self._feed_in), name="pg-in", daemon=True),
            threading.Thread(target=self._guard(self._feed_out), name="pg-out", daemon=True),
        ]

    def _guard(self, fn: Any) -> Any:
        def run() -> None:
            try:
                fn()
            except BaseException as err:
                self.errors.append(err)

        return run

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(30)
        assert not self.errors, self.errors

    def _feed_in(self) -> None:
        n = 0
        while not self.stop.is_set():
            msgs = []
            for i in range(TENANTS):
                contact = CONTACTS[n % len(CONTACTS)]
                msgs.append((phone_of(i), contact, f"pg{n:05d} t{i}"))
            body = {"messages": [{"phone": p, "from": c, "text": t} for p, c, t in msgs]}
            ids = self.fleet.sim("POST", "/sim/inbound/batch", body)["ids"]
            for mid, m in zip(ids, msgs, strict=True):
                self.in_ids[str(mid)] = m
            n += 1
            time.sleep(0.1)

    def _feed_out(self) -> None:
        headers = {"x-portal-key": "k" * 40, "x-user-email": "ops@example.com"}
        n = 0
        with httpx.Client(timeout=10, headers=headers) as client:
            while not self.stop.is_set():
                slug = f"t{self.rng.randrange(TENANTS):03d}"
                text = f"pgout{n:05d} {slug}"
                n += 1
                try:
                    r = client.post(
                        f"{self.cp_url}/portal/tenant/current/messages",
                        params={"tenant": slug},
                        json={"to": "+15559200000", "text": text},
                    )
                except httpx.TransportError:
                    self.refused.append(text)
                    self.codes["no answer"] += 1
                else:
                    self.codes[str(r.status_code)] += 1
                    if r.status_code == 202:
                        self.accepted[r.json()["id"]] = text
                    else:
                        # the database is down: a clear error, never a stack trace
                        assert (
                            r.status_code == 503
                            and r.json()["error"]["code"] == "database_unavailable"
                        ), r.text
                        self.refused.append(text)
                time.sleep(0.1)


def test_postgres_stopped_for_15s_under_load(fleet_factory: Any, pg_server: Any) -> None:
    tally = Tally("PostgreSQL stopped 15 s")
    fleet: Fleet = fleet_factory(tenants=TENANTS, workers=2)
    cp_port = free_port()
    cp = Proc(["control-plane", "--port", str(cp_port)], fleet.env, fleet.root / "cp.log")
    fleet.procs.append(cp)
    cp_url = f"http://127.0.0.1:{cp_port}"
    wait_http_ok(f"{cp_url}/healthz")
    load = FleetLoad(fleet, cp_url, seed=5)
    load.start()

    def outbound() -> list[dict[str, Any]]:
        return list(fleet.sim("GET", "/sim/outbound"))

    wait_until(lambda: len(outbound()) >= 20, timeout=30, what="the stream running")
    pg_server.stop()
    tally.faults += 1
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < PG_DOWN_S:
            assert all(w.alive() for w in fleet.workers), fleet.logs()
            time.sleep(0.5)
    finally:
        pg_server.start()
    fleet.wait_all_connected(timeout=60)
    n, accepted = len(outbound()), len(load.accepted)
    wait_until(lambda: len(outbound()) >= n + 20, timeout=40, what="flowing again")
    wait_until(
        lambda: len(load.accepted) >= accepted + 10, timeout=40, what="the control plane again"
    )
    load.finish()
    tally.inbound, tally.outbound = len(load.in_ids), len(load.accepted)

    want = {f"R-{mid}" for mid in load.in_ids} | set(load.accepted)

    def all_out() -> list[dict[str, Any]] | None:
        out = outbound()
        return out if want <= {m["id"] for m in out} else None

    try:
        out = wait_until(all_out, timeout=90, interval=0.5, what="every accepted message sent")
    except AssertionError:
        out = outbound()
    ids = [m["id"] for m in out]
    texts = [(m["phone"], m["to"], m["text"]) for m in out]
    tally.lost = len(want - set(ids))
    tally.duplicated = count_dupes(ids) + count_dupes([repr(t) for t in texts])
    tally.extra["post_answers"] = dict(load.codes)
    tally.report()
    assert tally.lost == 0, (sorted(want - set(ids))[:10], fleet.logs())
    assert tally.duplicated == 0, [t for t, c in Counter(texts).items() if c > 1][:10]
    by_id = {m["id"]: m for m in out}
    for mid, (phone, contact, text) in load.in_ids.items():
        reply = by_id[f"R-{mid}"]
        assert (reply["phone"], reply["to"], reply["text"]) == (phone, contact, f"echo: {text}")
    # no crash loop: the same two worker processes, registered once each
    assert all(w.alive() for w in fleet.workers), fleet.logs()
    assert len(fleet.query("SELECT id FROM worker_processes")) == 2
    assert fleet.max_concurrent() == 1
