"""Linking by phone number instead of QR (PairPhone): through the control plane and the
CLI, the worker asks the engine for a pairing code; entering it on the phone (the
simulator's scan of the code) links the account."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from tests.e2e.conftest import PHONE, SLUG, Stack
from tests.support.procs import WAFLEET

pytestmark = pytest.mark.slow
ROUTE = "/portal/tenant/current/actions/pair-phone"


def enter_code(stack: Stack, code: str) -> None:
    r = httpx.post(f"{stack.sim_url}/sim/scan", json={"qr": code, "phone": PHONE}, timeout=30)
    assert r.status_code == 200, r.text


def test_pair_phone_through_the_control_plane_links_the_account(stack: Stack) -> None:
    stack.start_control_plane()
    # not waiting for a link yet (no worker): refused with a clear 409
    err = stack.cp("POST", ROUTE, {"phone": PHONE}, expect=409)
    assert err["error"]["code"] == "not_waiting_for_link"
    stack.start_worker()
    stack.wait_qr()
    bad = stack.cp("POST", ROUTE, {"phone": "not a phone"}, expect=422)
    assert bad["error"]["code"] == "invalid_request"
    answer = stack.cp("POST", ROUTE, {"phone": PHONE})
    assert answer["status"] == "READY" and answer["code"]
    enter_code(stack, answer["code"])
    stack.wait_state("CONNECTED", phone=PHONE)
    kinds = [e["kind"] for e in stack.events()]
    assert "pair_code" in kinds


def test_pair_phone_cli_prints_the_code(stack: Stack) -> None:
    stack.start_worker()
    stack.wait_qr()
    out = subprocess.run(
        [*WAFLEET, "tenant", "pair-phone", SLUG, "--phone", PHONE],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    code = out.stdout.split("pairing code for acme: ")[1].split()[0]
    enter_code(stack, code)
    stack.wait_state("CONNECTED", phone=PHONE)
    bad = subprocess.run(
        [*WAFLEET, "tenant", "pair-phone", SLUG, "--phone", "12"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
