"""The portal in Debian's Chromium against a real `wafleet up --simulator`: log in, see the
QR code, scan it at the simulator, watch the page turn CONNECTED without reload, see
messages, a dropped connection and its recovery live, re-link, tenant isolation, CSRF.
Screenshots go to tests/artifacts/."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import chromium, require_chromium, wafleet_up
from tests.support.procs import WAFLEET, Proc, base_env, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PASSWORD = "portal-e2e-pw"
ALICE, BOB, ADMIN = "alice@alpha.test", "bob@bravo.test", "ops@x.test"
PHONE = "+15550001"
WAIT_MS = 30_000


@dataclass
class Up:
    portal: str
    sim: str
    proc: Proc


def cli(env: dict[str, str], *args: str) -> None:
    res = subprocess.run([*WAFLEET, *args], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    require_chromium()
    data = tmp_path_factory.mktemp("portal-e2e")
    # A slower first retry so the outage after a dropped connection lasts longer than
    # one poll of the page's stream (it is seen, not just its aftermath).
    env = base_env(data, WAFLEET_RECONNECT_INITIAL_DELAY="3", WAFLEET_RECONNECT_JITTER="0")
    cli(env, "migrate")
    cli(env, "user", "create", ALICE, "--password", PASSWORD)
    cli(env, "user", "create", BOB, "--password", PASSWORD)
    cli(env, "user", "create", ADMIN, "--password", PASSWORD, "--admin")
    cli(env, "tenant", "create", "alpha", "--name", "Alpha Bakery", "--owner", ALICE)
    cli(env, "tenant", "create", "bravo", "--name", "Bravo Bikes", "--owner", BOB)
    with wafleet_up(env, data) as stack:
        yield Up(stack.portal, stack.sim, stack.proc)


@pytest.fixture(scope="module")
def browser(up: Up) -> Iterator[Any]:
    with chromium() as b:
        yield b


def log_in(browser: Any, up: Up, email: str) -> Any:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{up.portal}/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("domcontentloaded")
    return page


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def raw_qr(page: Any, up: Up) -> str:
    resp = page.request.get(f"{up.portal}/api/portal/tenant/current/qr")
    assert resp.status == 200
    qr = resp.json()["qr"]
    assert qr
    return str(qr)


def scan(page: Any, up: Up) -> None:
    # The code may rotate between reading and scanning: read it again then.
    def once() -> bool:
        r = httpx.post(f"{up.sim}/sim/scan", json={"qr": raw_qr(page, up), "phone": PHONE})
        return r.status_code == 200

    wait_until(once, timeout=20, interval=0.5, what="a successful scan")


def test_link_chat_drop_recover_relink(browser: Any, up: Up) -> None:
    from playwright.sync_api import expect

    page = log_in(browser, up, ALICE)
    assert page.url.endswith("/app/status")
    state = page.locator("#session-state")
    expect(state).to_have_text("QR_READY")
    qr = page.locator("img#qr")
    expect(qr).to_have_attribute("src", _re(r"^data:image/png;base64,"))
    expect(page.locator("#simulator-link")).to_have_attribute("href", up.sim + "/")
    expect(page.locator("#live-status")).to_have_text(_re("^Live:"))
    shot(page, "status-qr-ready.png")
    first_qr = qr.get_attribute("src")

    page.evaluate("window.__sameDocument = true")  # survives only if the page never reloads
    scan(page, up)
    expect(state).to_have_text("CONNECTED")
    expect(page.locator("img#qr")).to_have_count(0)
    expect(page.locator("#phone")).to_have_text(PHONE)
    assert page.evaluate("window.__sameDocument === true")

    # an inbound message shows up live in the recent messages, then on /app/logs
    text = "hello <b>from</b> the e2e test"
    r = httpx.post(
        f"{up.sim}/sim/inbound", json={"phone": PHONE, "from": "+15559999", "text": text}
    )
    assert r.status_code == 200
    expect(page.locator("#recent-logs")).to_contain_text(text)
    shot(page, "status-connected.png")

    # a dropped connection: the disconnect and the recovery, live
    page.evaluate(
        """() => {
        window.__states = [];
        const el = document.getElementById('session-state');
        new MutationObserver(() => window.__states.push(el.textContent))
            .observe(el, {childList: true, characterData: true, subtree: true});
    }"""
    )
    r = httpx.post(f"{up.sim}/sim/faults", json={"kind": "drop", "phone": PHONE})
    assert r.status_code == 200
    expect(page.locator("#disconnect-block")).to_be_visible()
    expect(page.locator("#disconnect-cause")).not_to_have_text(_re("^(restart_required|)$"))
    expect(page.locator("#disconnect-todo")).not_to_be_empty()
    expect(state).to_have_text("CONNECTED")
    seen = page.evaluate("window.__states")
    assert any(s != "CONNECTED" for s in seen), seen  # the outage itself was shown
    assert page.evaluate("window.__sameDocument === true")
    shot(page, "status-recovered.png")
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "status-phone.png")
    page.set_viewport_size({"width": 1100, "height": 900})

    logs = page.context.new_page()
    logs.goto(f"{up.portal}/app/logs?direction=in")
    expect(logs.locator("#recent-logs")).to_contain_text(text)  # as text: escaped
    assert logs.locator("#recent-logs b").count() == 0
    logs.close()

    # re-link: a new QR code appears without reload
    page.click("#action-relink")
    expect(page.locator("#action-result")).to_contain_text("Re-link requested")
    expect(state).to_have_text("QR_READY")
    expect(page.locator("img#qr")).to_have_attribute("src", _re(r"^data:image/png;base64,"))
    assert page.locator("img#qr").get_attribute("src") != first_qr
    assert page.evaluate("window.__sameDocument === true")
    page.context.close()


def test_other_tenant_and_csrf_refused(browser: Any, up: Up) -> None:
    page = log_in(browser, up, BOB)
    resp = page.goto(f"{up.portal}/app/status?tenant=alpha")
    assert resp is not None
    assert resp.status == 403
    for path in ("/app/logs?tenant=alpha", "/app/settings?tenant=alpha", "/admin"):
        r = page.goto(f"{up.portal}{path}")
        assert r is not None
        assert r.status == 403, path
    api = page.request.get(f"{up.portal}/api/portal/tenant/current/logs?tenant=alpha")
    assert api.status == 403
    # own tenant works; a POST without the CSRF token is refused, with it accepted
    page.goto(f"{up.portal}/app/status")
    assert page.locator("#session-state").text_content() in {"CONNECTING", "QR_READY"}
    action = f"{up.portal}/api/portal/tenant/current/actions/restart"
    assert page.request.post(action).status == 403
    token = page.evaluate("document.body.dataset.csrf")
    assert page.request.post(action, headers={"x-csrf-token": token}).status == 202
    page.context.close()


def test_fleet_view_for_admins(browser: Any, up: Up) -> None:
    from playwright.sync_api import expect

    page = log_in(browser, up, ADMIN)
    page.goto(f"{up.portal}/admin")
    expect(page.locator("#tenants")).to_contain_text("alpha")
    expect(page.locator("#tenants")).to_contain_text("bravo")
    expect(page.locator("#workers")).to_contain_text("RUNNING")
    shot(page, "fleet.png")
    phone = browser.new_context(viewport={"width": 390, "height": 844})
    p2 = phone.new_page()
    p2.goto(f"{up.portal}/login")
    shot(p2, "login-phone.png")
    phone.close()
    page.context.close()


def _re(pattern: str) -> Any:
    import re

    return re.compile(pattern)
