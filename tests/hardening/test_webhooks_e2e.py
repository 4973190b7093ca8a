"""Webhooks across real processes (simulator, worker, control plane, CLI) and a real
receiver on 127.0.0.1 — beyond tests/e2e/test_webhook.py (signed, one 503 retried):

* configure time: a loopback webhook is refused when WAFLEET_WEBHOOK_ALLOW_PRIVATE is
  false — ``wafleet tenant configure`` exits 2 with one line, the control plane's
  ``PUT /portal/tenant/current/config`` answers 422 — and accepted when true;
* a slow webhook (one chat) never stalls another chat of the tenant nor another tenant;
* retries bounded by WAFLEET_WEBHOOK_MAX_ATTEMPTS (3 here): 5xx and timeouts (each
  attempt bounded by WAFLEET_WEBHOOK_TIMEOUT) retried then FAILED with the reason, 4xx
  FAILED at once, and a chat's order kept across retries and failures;
* delivery time: a worker with ALLOW_PRIVATE=false refuses a stored ``localhost`` hook —
  the message is FAILED with the reason, the receiver never called.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import OWNER, PHONE, PORTAL_KEY, SLUG, Stack, eventually
from tests.hardening.conftest import Tally, new_stack, stop_all
from tests.hardening.hook_receiver import HookReceiver, running_hook
from tests.support.procs import WAFLEET, Proc, free_port, wait_http_ok

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SECRET = "e2e-hook-secret"
BETA, PHONE2 = "beta", "+15550002"
SLOW_S = 2.0  # chat A's hook answers after this long ...
TIMEOUT_S = 3  # ... within WAFLEET_WEBHOOK_TIMEOUT; chat G's hook (6 s) never does
A, B, C, D, E, F, G = (f"+1555200000{i}" for i in range(1, 8))


def _rules(url: str) -> dict[str, Any]:
    return {
        "rules": [{"match": "keyword", "pattern": "price", "reply": "cheap"}],
        "webhook": {"url": url, "secret": SECRET},
    }


def _configure(st: Stack, slug: str, url: str, *, allow: bool) -> subprocess.CompletedProcess[str]:
    path = st.root / f"rules-{slug}-{abs(hash(url))}.json"
    path.write_text(json.dumps(_rules(url)))
    env = {**st.env, "WAFLEET_WEBHOOK_ALLOW_PRIVATE": "true" if allow else "false"}
    return subprocess.run(
        [*WAFLEET, "tenant", "configure", slug, "--rules", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _outbound(st: Stack, phone: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{st.sim_url}/sim/outbound", params={"phone": phone}, timeout=10)
    return list(r.json())


def _replies_to(st: Stack, phone: str, chat: str) -> list[str]:
    return [m["text"] for m in _outbound(st, phone) if m["to"] == chat]


def _in_row(st: Stack, wa_id: str) -> dict[str, Any]:
    [row] = [r for r in st.messages("in") if r["wa_id"] == wa_id]
    return row


def _link_beta(st: Stack) -> None:
    def qr() -> str | None:
        rows = st.query(
            "SELECT s.state, s.last_qr FROM whatsapp_sessions s JOIN tenants t "
            "ON t.id = s.tenant_id WHERE t.slug = ?",
            BETA,
        )
        return rows[0]["last_qr"] if rows and rows[0]["state"] == "QR_READY" else None

    for _ in range(10):
        code = eventually(qr, timeout=30, what="beta's QR code", stack=st)
        r = httpx.post(f"{st.sim_url}/sim/scan", json={"qr": code, "phone": PHONE2}, timeout=10)
        if r.status_code == 200:
            break
    eventually(
        lambda: (
            st.query(
                "SELECT s.state FROM whatsapp_sessions s JOIN tenants t ON t.id = s.tenant_id "
                "WHERE t.slug = ?",
                BETA,
            )[0]["state"]
            == "CONNECTED"
        ),
        timeout=30,
        what="beta CONNECTED",
        stack=st,
    )


def _send(st: Stack, phone: str, chat: str, text: str) -> str:
    body = {"phone": phone, "from": chat, "text": text}
    return str(st.sim("POST", "/sim/inbound", body)["id"])


def test_webhooks_refused_bounded_ordered_and_never_stalling(
    seeded_data_dir: Path, tmp_path: Path
) -> None:
    tally = Tally("webhooks e2e")
    st = new_stack(
        seeded_data_dir,
        tmp_path,
        WAFLEET_WEBHOOK_ALLOW_PRIVATE="true",
        WAFLEET_WEBHOOK_MAX_ATTEMPTS="3",
        WAFLEET_WEBHOOK_TIMEOUT=str(TIMEOUT_S),
    )
    with running_hook(SECRET) as hook:
        try:
            _run(st, hook, tally)
        finally:
            stop_all(st)


def _run(st: Stack, hook: HookReceiver, tally: Tally) -> None:
    st.start_simulator()
    # ---- configure time: refused unless allowed
    refused = _configure(st, SLUG, f"http://localhost:{hook.port}/hook", allow=False)
    assert refused.returncode == 2, refused
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert "loopback/private" in refused.stderr
    assert _configure(st, SLUG, hook.url, allow=True).returncode == 0
    st.cli("tenant", "create", BETA, "--name", "Beta", "--owner", OWNER)
    assert _configure(st, BETA, hook.url, allow=True).returncode == 0

    cp_port = free_port()
    cp = Proc(
        ["control-plane", "--port", str(cp_port)],
        {**st.env, "WAFLEET_WEBHOOK_ALLOW_PRIVATE": "false"},
        st.root / "cp-strict.log",
    )
    st.procs.append(cp)
    wait_http_ok(f"http://127.0.0.1:{cp_port}/healthz")
    headers = {"x-portal-key": PORTAL_KEY, "x-user-email": OWNER}
    for url in ("http://localhost:9/hook", "http://127.0.0.1:9/hook", "http://[::1]:9/hook"):
        r = httpx.put(
            f"http://127.0.0.1:{cp_port}/portal/tenant/current/config",
            params={"tenant": SLUG},
            json=_rules(url),
            headers=headers,
            timeout=10,
        )
        assert r.status_code == 422, (url, r.status_code, r.text)
        assert r.json()["error"]["code"] == "invalid_rules"
        assert "loopback/private" in r.json()["error"]["message"]
    r = httpx.get(
        f"http://127.0.0.1:{cp_port}/portal/tenant/current/config",
        params={"tenant": SLUG},
        headers=headers,
        timeout=10,
    )
    assert r.json()["config"]["webhook"]["url"] == hook.url  # the refused PUTs changed nothing

    # ---- two linked tenants
    worker = st.start_worker()
    st.link()
    _link_beta(st)

    # ---- a slow webhook in chat A; chat B and tenant beta answered meanwhile
    ids: dict[str, str] = {}
    ids["a1"] = _send(st, PHONE, A, f"slow {SLOW_S} a1")
    eventually(lambda: hook.in_flight, timeout=20, what="chat A's webhook call in flight", stack=st)
    ids["d1"] = _send(st, PHONE, D, "flaky 2 d1")
    ids["d2"] = _send(st, PHONE, D, "ok d2")
    ids["d3"] = _send(st, PHONE, D, "ok d3")
    ids["e1"] = _send(st, PHONE, E, "fail 503 e1")
    ids["e2"] = _send(st, PHONE, E, "fail 400 e2")
    ids["e3"] = _send(st, PHONE, E, "price e3")
    ids["g1"] = _send(st, PHONE, G, "slow 6 g1")
    t0 = time.monotonic()
    ids["b1"] = _send(st, PHONE, B, "ok b1")
    ids["c1"] = _send(st, PHONE2, C, "ok c1")
    tally.inbound += len(ids)
    eventually(
        lambda: (
            _replies_to(st, PHONE, B) == ["hook: ok b1"]
            and _replies_to(st, PHONE2, C) == ["hook: ok c1"]
        ),
        timeout=SLOW_S,
        what="chat B and tenant beta answered while chat A's webhook sleeps",
        stack=st,
    )
    waited = time.monotonic() - t0
    assert f"slow {SLOW_S} a1" in hook.in_flight, "chat A's call ended before B and C"
    assert _replies_to(st, PHONE, A) == []
    tally.extra["other_chats_answered_within_s"] = round(waited, 2)
    eventually(
        lambda: _replies_to(st, PHONE, A) == [f"hook: slow {SLOW_S} a1"],
        timeout=SLOW_S + 10,
        what="chat A answered after its slow webhook",
        stack=st,
    )

    # ---- order within a chat across retries (d1: 503, 503, then 200)
    eventually(
        lambda: _replies_to(st, PHONE, D) == ["hook: flaky 2 d1", "hook: ok d2", "hook: ok d3"],
        timeout=30,
        what="chat D answered in order",
        stack=st,
    )
    assert hook.attempts[ids["d1"]] == 3
    assert hook.calls_for("ok d2")[0].at >= hook.calls_for("flaky 2 d1")[-1].at
    tally.faults += 2

    # ---- bounded retries, then FAILED with the reason; the chat goes on, in order
    eventually(lambda: _replies_to(st, PHONE, E) == ["cheap"], timeout=30, what="chat E", stack=st)
    e1, e2 = _in_row(st, ids["e1"]), _in_row(st, ids["e2"])
    assert (e1["status"], e1["error"]) == ("FAILED", "webhook failed after 3 attempts: HTTP 503")
    assert (e2["status"], e2["error"]) == ("FAILED", "webhook answered HTTP 400 (not retried)")
    assert hook.attempts[ids["e1"]] == 3 and hook.attempts[ids["e2"]] == 1
    assert hook.calls_for("fail 400 e2")[0].at >= hook.calls_for("fail 503 e1")[-1].at
    assert _in_row(st, ids["e3"])["status"] == "PROCESSED"
    assert ids["e3"] not in hook.attempts  # a rule answered it: never sent to the hook
    tally.faults += 4
    # the per-request timeout is WAFLEET_WEBHOOK_TIMEOUT, each attempt, then FAILED
    g1 = eventually(
        lambda: (r := _in_row(st, ids["g1"]))["status"] == "FAILED" and r,
        timeout=30,
        what="g1 FAILED after its timeouts",
        stack=st,
    )
    assert g1["error"] == f"webhook failed after 3 attempts: timeout after {TIMEOUT_S}s"
    assert len(hook.calls_for("slow 6 g1")) == 3 and _replies_to(st, PHONE, G) == []
    tally.faults += 3
    assert all(c.signature_ok for c in hook.calls)

    # ---- delivery time: a stored localhost hook, a worker that does not allow private
    worker.stop()
    assert _configure(st, SLUG, f"http://localhost:{hook.port}/hook", allow=True).returncode == 0
    st.env_overrides["WAFLEET_WEBHOOK_ALLOW_PRIVATE"] = "false"
    st.start_worker()
    ids["f1"] = _send(st, PHONE, F, "ok f1")
    tally.inbound += 1
    row = eventually(
        lambda: (r := _in_row(st, ids["f1"]))["status"] == "FAILED" and r,
        timeout=30,
        what="f1 FAILED (refused)",
        stack=st,
    )
    assert "localhost" in row["error"] and "(refused)" in row["error"], row
    assert hook.calls_for("ok f1") == [] and _replies_to(st, PHONE, F) == []
    tally.faults += 1

    # every inbound message handled exactly once: a reply or a FAILED row, never twice
    out = _outbound(st, PHONE) + _outbound(st, PHONE2)
    assert len({m["id"] for m in out}) == len(out)
    replied = {m["id"][2:] for m in out}
    failed = {r["wa_id"] for r in st.messages("in") if r["status"] == "FAILED"}
    tally.lost = len(set(ids.values()) - replied - failed)
    tally.duplicated = len(out) - len({m["text"] for m in out})
    tally.report()
    assert tally.lost == 0 and tally.duplicated == 0
