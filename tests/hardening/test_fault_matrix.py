"""Fault matrix, real processes: every fault kind of the simulator (and the qr_timeout it
produces by itself) against ONE linked stack (simulator, control plane, worker) reused
across the cases — faults are cleared and the tenant restarted/relinked between them.

For each: the session state, cause and action recorded; the retry behaviour the simulator
saw (reconnects / backoff growing / none / ban waited out); the portal's wording
(`explain_status_json` of the control plane's status JSON, `explain` of the session row,
`CAUSE_EXPLANATIONS`): non-empty and naming the right next step; and the "disconnected"
line with the cause in the tenant's JSON log file. Plus combined faults.
(Causes the simulator cannot produce are in test_fault_matrix_scripted.py.)
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.conftest import PHONE, SLUG, Stack, eventually, steady
from tests.hardening.conftest import Tally, count_dupes, ensure_connected, tenant_log_lines
from wafleet.ops.explain import SessionFacts, explain, explain_status_json
from wafleet.states import CAUSE_EXPLANATIONS, Cause

pytestmark = pytest.mark.slow

QUIET_S = 2.0  # "no further connect attempts" is checked over this long
INITIAL_DELAY = 1.0  # MATRIX_ENV

TALLY = Tally("fault matrix (real stack)")


@dataclass(frozen=True)
class Case:
    kind: str
    cause: str
    action: str
    states: tuple[str, ...]  # the session state while the fault holds
    retry: str  # "reconnects" | "at_once" | "backoff" | "none" | "ban"
    next_step: tuple[str, ...]  # words the portal's next step must contain (any of them)
    duration_s: float | None = None
    tenant_status: str = "ACTIVE"


CASES = [
    Case("drop", "network", "retrying", ("DISCONNECTED", "CONNECTING"), "reconnects", ("nothing to do",)),
    # 60 s x time-scale 0.05 = 3 s: longer than keepalive detection (~1 s)
    Case(
        "blackhole", "keepalive_timeout", "retrying", ("DISCONNECTED", "CONNECTING"),
        "reconnects", ("nothing to do",), duration_s=60,
    ),
    Case("refuse", "network", "retrying", ("DISCONNECTED", "CONNECTING"), "backoff", ("nothing to do",)),
    Case("logout", "logged_out", "needs_link", ("LOGGED_OUT",), "none", ("relink", "re-link")),
    Case(
        "replaced", "replaced", "needs_operator", ("DISCONNECTED",), "none", ("restart",),
        tenant_status="ERROR",
    ),
    # 80 s x 0.05 = 4 s of ban
    Case(
        "temp_ban", "temp_banned", "waiting_until", ("DISCONNECTED",), "ban", ("wait",),
        duration_s=80,
    ),
    Case(
        "restart_required", "restart_required", "retrying", ("DISCONNECTED", "CONNECTING"),
        "at_once", ("nothing to do",),
    ),
    Case(
        "outdated", "client_outdated", "needs_operator", ("DISCONNECTED",), "none",
        ("upgrade",), tenant_status="ERROR",
    ),
]  # fmt: skip


def _ts(value: Any) -> datetime:
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _disconnect_after(st: Stack, mark: int, cause: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first "disconnect" event with ``cause`` after ``mark`` and the session row."""

    def seen() -> tuple[dict[str, Any], dict[str, Any]] | None:
        evs = [e for e in st.events(mark) if e["kind"] == "disconnect" and e["cause"] == cause]
        return (evs[0], st.session()) if evs else None

    return eventually(seen, timeout=30, what=f"a disconnect with cause {cause}", stack=st)  # type: ignore[no-any-return]


def _check_wording(st: Stack, case: Case, row: dict[str, Any], state: str) -> None:
    words = tuple(w.lower() for w in case.next_step)
    what, todo = CAUSE_EXPLANATIONS[Cause(case.cause)]
    assert what.strip() and todo.strip()
    assert any(w in todo.lower() for w in words), (case.cause, todo)
    # the session row as it was right after the disconnect (the portal shows the same)
    facts = SessionFacts.from_row({**row, "state": state})
    ex = explain(SLUG, str(row["tenant_status"]), facts, error_message=row["error_message"])
    assert ex.summary.strip() and ex.next_step.strip()
    assert any(w in ex.next_step.lower() for w in words), (case.cause, ex)


def _check_live_wording(st: Stack, case: Case) -> dict[str, Any]:
    status = st.cp("GET", "/portal/tenant/current/status")
    assert status["last_disconnect"]["cause"] == case.cause
    assert status["last_disconnect"]["action"] == case.action
    ex = explain_status_json(status)
    assert ex.summary.strip() and ex.next_step.strip()
    words = tuple(w.lower() for w in case.next_step)
    assert any(w in ex.next_step.lower() for w in words), (case.cause, ex, status)
    return dict(status)


def _log_line(st: Stack, after: int, cause: str, action: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        for line in tenant_log_lines(st.data)[after:]:
            if line.get("event") == "disconnected" and line.get("cause") == cause:
                return line
        return None

    line = eventually(
        found, timeout=10, what=f"'disconnected' {cause} in logs/{SLUG}.log", stack=st
    )
    assert line["action"] == action and line["tenant"] == SLUG
    return line  # type: ignore[no-any-return]


def _no_more_connects(st: Stack) -> None:
    attempts = st.connect_attempts()
    steady(lambda: st.connect_attempts() == attempts, QUIET_S)
    assert st.stats()["connections"].get(PHONE, 0) == 0
    s = st.session()
    assert s["reconnect_active"] == 0 and s["next_retry_at"] is None


def _reconnected(st: Stack, before: dict[str, Any]) -> dict[str, Any]:
    def again() -> dict[str, Any] | None:
        s = st.session()
        ok = s["state"] == "CONNECTED" and s["connected_since"] != before["connected_since"]
        return s if ok else None

    return eventually(again, timeout=30, what="CONNECTED again", stack=st)  # type: ignore[no-any-return]


def _answers(st: Stack, text: str) -> None:
    n = len(st.outbound())
    st.inbound("+15559999", text)
    TALLY.inbound += 1
    assert st.wait_outbound(n + 1)[-1]["text"] == f"echo: {text}"


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_fault_kind(shared_stack: Stack, case: Case) -> None:
    st = shared_stack
    ensure_connected(st)
    before = st.session()
    mark = st.last_event_id()
    log_mark = len(tenant_log_lines(st.data))
    attempts = st.connect_attempts()

    resp = st.fault(case.kind, case.duration_s)
    TALLY.faults += 1
    if case.kind == "refuse":
        st.fault("drop")  # refuse only hits new connections: end the open one
        TALLY.faults += 1
    else:
        assert resp["affected"] == 1, resp

    ev, row = _disconnect_after(st, mark, case.cause)
    assert ev["from_state"] == "CONNECTED"
    assert ev["to_state"] in case.states, ev
    assert row["last_disconnect_action"] == case.action, row
    _check_wording(st, case, row, str(ev["to_state"]))
    _log_line(st, log_mark, case.cause, case.action)

    if case.retry == "none":
        s = eventually(
            lambda: (r := st.session())["tenant_status"] == case.tenant_status and r,
            timeout=10,
            what=f"tenant {case.tenant_status}",
            stack=st,
        )
        assert s["state"] in case.states
        if case.tenant_status == "ERROR":
            assert s["error_message"]
        _no_more_connects(st)
        _check_live_wording(st, case)
    elif case.retry == "ban":
        s = st.session()
        assert s["ban_expires_at"] is not None and s["next_retry_at"] == s["ban_expires_at"]
        assert s["reconnect_active"] == 1
        live = _check_live_wording(st, case)
        assert live["reconnect"]["next_retry_at"] is not None
        expires = _ts(s["ban_expires_at"])
        n = st.connect_attempts()
        while (expires - datetime.now(UTC)).total_seconds() > 0.3:
            assert st.connect_attempts() == n, "connected during the ban"
            time.sleep(0.2)
        s = _reconnected(st, before)
        assert st.connect_attempts() == n + 1, "one retry after the ban, not several"
        assert s["ban_expires_at"] is None and s["tenant_status"] == "ACTIVE"
    elif case.retry == "backoff":
        delays: dict[int, float] = {}

        def grown() -> bool:
            s = st.session()
            k = int(s["reconnect_attempt"] or 0)
            if s["next_retry_at"] and s["last_disconnect_at"] and k not in delays:
                delays[k] = (_ts(s["next_retry_at"]) - _ts(s["last_disconnect_at"])).total_seconds()
            return k >= 3

        eventually(grown, timeout=20, what="3 reconnect attempts", stack=st)
        assert st.connect_attempts() >= attempts + 2
        seq = [delays[k] for k in sorted(delays)]
        assert seq == sorted(seq) and seq[-1] > seq[0], delays  # growing
        assert all(INITIAL_DELAY * 0.9 <= d <= 3.05 for d in seq), delays
        _check_live_wording(st, case)
        st.clear_faults()
        s = _reconnected(st, before)
        assert s["reconnect_attempt"] == 0 and s["reconnect_active"] == 0
    else:  # reconnects / at_once
        s = _reconnected(st, before)
        assert st.connect_attempts() > attempts
        assert s["tenant_status"] == "ACTIVE" and s["reconnect_attempt"] == 0
        if case.retry == "at_once":
            conn = next(
                e for e in st.events(mark) if e["to_state"] == "CONNECTING" and e["id"] > ev["id"]
            )
            gap = (_ts(conn["at"]) - _ts(ev["at"])).total_seconds()
            assert gap < INITIAL_DELAY, f"waited {gap:.2f}s: that is backoff, not 'at once'"

    if case.retry in ("reconnects", "at_once", "backoff", "ban"):
        _answers(st, f"after {case.kind}")
    TALLY.report()


def test_qr_timeout_needs_link_and_shows_no_new_code(shared_stack: Stack) -> None:
    """Relink, then nobody scans: after the 6 codes (160 s x 0.05 = 8 s) → qr_timeout."""
    st = shared_stack
    ensure_connected(st)
    mark = st.last_event_id()
    log_mark = len(tenant_log_lines(st.data))
    st.cp("POST", "/portal/tenant/current/actions/relink", expect=202)
    st.wait_qr()
    ev, row = _disconnect_after(st, mark, "qr_timeout")
    case = Case(
        "-", "qr_timeout", "needs_link", ("DISCONNECTED",), "none", ("relink", "re-link", "link")
    )
    assert ev["to_state"] == "DISCONNECTED" and ev["from_state"] == "QR_READY"
    assert row["last_disconnect_action"] == "needs_link"
    _check_wording(st, case, row, "DISCONNECTED")
    _log_line(st, log_mark, "qr_timeout", "needs_link")
    TALLY.faults += 1
    # no new code until asked, no connects
    assert st.session()["last_qr"] is None
    steady(
        lambda: st.session()["state"] == "DISCONNECTED" and st.stats().get("qr_waiting", 0) == 0,
        QUIET_S,
    )
    _check_live_wording(st, case)
    TALLY.report()


# ---------------------------------------------------------------- combined faults


def test_drop_during_reconnect_backoff(shared_stack: Stack) -> None:
    """While the worker backs off against a refusing server, connections that do get
    through are dropped right after the upgrade: still network/retrying, never two
    connects at once, and back by itself once the faults end."""
    st = shared_stack
    ensure_connected(st)
    before = st.session()
    st.fault("refuse")
    st.fault("drop")
    eventually(
        lambda: st.session()["reconnect_attempt"] >= 1, timeout=15, what="in backoff", stack=st
    )
    # during the backoff: refusals end, drops of every new connection begin (3 s)
    st.sim("DELETE", "/sim/faults", {"phone": PHONE})
    st.fault("drop", duration_s=60)
    TALLY.faults += 3
    n = st.connect_attempts()
    eventually(
        lambda: st.connect_attempts() >= n + 2, timeout=20, what="dropped reconnects", stack=st
    )
    s = st.session()
    assert s["state"] != "CONNECTED"
    assert (s["last_disconnect_cause"], s["last_disconnect_action"]) == ("network", "retrying")
    assert s["reconnect_active"] == 1 and s["tenant_status"] == "ACTIVE"
    s = _reconnected(st, before)
    assert s["reconnect_attempt"] == 0
    assert st.stats()["max_concurrent"].get(PHONE, 0) <= 1
    _answers(st, "after drop in backoff")
    TALLY.report()


def test_logout_while_qr_ready(shared_stack: Stack) -> None:
    """A logout from the phone while the session shows a QR code (relink in progress):
    the old device is gone anyway; the code stays scannable and a scan links again."""
    st = shared_stack
    ensure_connected(st)
    st.cp("POST", "/portal/tenant/current/actions/relink", expect=202)
    qr = st.wait_qr()
    st.sim("POST", "/sim/faults", {"kind": "logout", "phone": PHONE})
    TALLY.faults += 1
    steady(lambda: st.session()["state"] == "QR_READY", 1.0)
    s = st.session()
    assert s["tenant_status"] == "ACTIVE"
    st.scan(qr if s["last_qr"] == qr else str(s["last_qr"]))
    st.wait_state("CONNECTED", phone=PHONE)
    _answers(st, "after logout while QR_READY")
    TALLY.report()


def test_temp_ban_with_queued_outbox_sends_each_once_after_the_ban(shared_stack: Stack) -> None:
    st = shared_stack
    ensure_connected(st)
    before = st.session()
    st.fault("temp_ban", duration_s=80)  # 4 s
    TALLY.faults += 1
    st.wait_state("DISCONNECTED", last_disconnect_cause="temp_banned")
    n_out = len(st.outbound())
    queued: list[str] = []
    for i in range(10):
        r = st.cp(
            "POST",
            "/portal/tenant/current/messages",
            {"to": "+15558000001", "text": f"during ban {i:02d}"},
            expect=202,
        )
        queued.append(r["id"])
    TALLY.outbound += len(queued)
    s = st.session()
    assert s["state"] != "CONNECTED", "the ban ended before the outbox was filled"
    assert len(st.outbound()) == n_out  # nothing goes out during the ban
    assert st.cp("GET", "/portal/tenant/current/status")["messages"]["pending_out"] >= 10
    _reconnected(st, before)
    out = st.wait_outbound(n_out + len(queued))
    mine = [m for m in out if m["id"] in set(queued)]
    assert [m["text"] for m in mine] == [f"during ban {i:02d}" for i in range(10)]
    texts = [m["text"] for m in out if m["text"].startswith("during ban")]
    TALLY.lost += len(set(queued) - {m["id"] for m in mine})
    TALLY.duplicated += count_dupes(texts)
    assert TALLY.lost == 0 and TALLY.duplicated == 0

    def settled() -> bool:
        rows = {r["wa_id"]: r["status"] for r in st.messages("out") if r["wa_id"] in queued}
        return all(v in ("SENT", "DELIVERED", "READ") for v in rows.values()) and len(rows) == 10

    eventually(settled, timeout=15, what="outbox rows SENT", stack=st)
    assert Counter(m["id"] for m in st.outbound())[queued[0]] == 1
    TALLY.report()


# ---------------------------------------------------------------- orderly stops (action none)


def _stop_line(st: Stack, after: int, cause: str) -> dict[str, Any]:
    """An orderly stop is not a lost connection: its line is the "stop" transition."""

    def found() -> dict[str, Any] | None:
        for line in tenant_log_lines(st.data)[after:]:
            if line.get("event") == "session state" and line.get("cause") == cause:
                return line
        return None

    return eventually(found, timeout=10, what=f"a {cause} stop in logs/{SLUG}.log", stack=st)  # type: ignore[no-any-return]


def test_pause_is_an_orderly_stop_until_resumed(shared_stack: Stack) -> None:
    st = shared_stack
    ensure_connected(st)
    log_mark = len(tenant_log_lines(st.data))
    st.cp("POST", "/portal/tenant/current/actions/pause", expect=202)
    s = st.wait_state("DISCONNECTED", last_disconnect_cause="paused", last_disconnect_action="none")
    assert s["tenant_status"] == "PAUSED" and s["reconnect_active"] == 0
    assert _stop_line(st, log_mark, "paused")["kind"] == "stop"
    _no_more_connects(st)
    what, todo = CAUSE_EXPLANATIONS[Cause.PAUSED]
    assert what and "resume" in todo.lower()
    ex = explain_status_json(st.cp("GET", "/portal/tenant/current/status"))
    assert ex.summary.strip() and "resume" in ex.next_step.lower(), ex
    st.cp("POST", "/portal/tenant/current/actions/resume", expect=202)
    st.wait_state("CONNECTED", phone=PHONE, timeout=30)
    _answers(st, "after resume")
    TALLY.report()


def test_worker_shutdown_is_an_orderly_stop_resumed_by_the_next_worker(shared_stack: Stack) -> None:
    st = shared_stack
    ensure_connected(st)
    log_mark = len(tenant_log_lines(st.data))
    assert st.worker is not None
    assert st.worker.stop() == 0  # SIGTERM: drain, disconnect, release
    s = st.session()
    assert (s["state"], s["last_disconnect_cause"], s["last_disconnect_action"]) == (
        "DISCONNECTED",
        "shutdown",
        "none",
    )
    assert s["tenant_status"] == "ACTIVE"
    assert _stop_line(st, log_mark, "shutdown")["kind"] == "stop"
    ex = explain(SLUG, "ACTIVE", SessionFacts.from_row(s))
    assert ex.summary.strip() and "wafleet worker" in ex.next_step, ex
    assert "resumes" in CAUSE_EXPLANATIONS[Cause.SHUTDOWN][1]
    assert st.stats()["connections"].get(PHONE, 0) == 0
    st.start_worker()
    st.wait_state("CONNECTED", phone=PHONE, timeout=30)
    _answers(st, "after a worker restart")
    TALLY.report()
